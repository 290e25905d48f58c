"""The reference for the chest X-ray assignment, as one computation with knobs.

With no knobs set, each function computes what the assignment asks. Each
knob reproduces one mistake students make; the catalogue (catalogue.toml)
names the knob settings. The grader only ever calls these functions in its
own process: this file never reaches a student's kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Knobs = dict[str, Any]


def compute_class_freqs(knobs: Knobs, args: tuple[Any, ...]) -> tuple[Any, Any]:
    """Fractions of positive and negative examples per class (axis 0)."""
    labels = np.asarray(args[0])
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    n_examples, n_classes = labels.shape
    axis = knobs.get("axis", 0)

    if knobs.get("overall"):
        count = labels.sum()
        denominator = n_examples * n_classes
    else:
        count = labels.sum(axis=axis)
        denominator = {
            "examples": n_examples,
            "along_axis": labels.shape[axis],
            "classes": n_classes,
            "none": 1,
        }[knobs.get("denominator", "examples")]

    if knobs.get("integer_division"):
        positive = np.floor_divide(count, denominator)
    else:
        positive = np.true_divide(count, denominator)

    negative = {
        "complement": lambda: 1 - positive,
        "integer_complement": lambda: np.floor_divide(
            denominator - count, denominator
        ),
        "copy": lambda: positive,
        "minus": lambda: -positive,
    }[knobs.get("negative", "complement")]()

    if "round" in knobs:
        positive = np.round(positive, knobs["round"])
        negative = np.round(negative, knobs["round"])
    if knobs.get("swap"):
        return negative, positive
    return positive, negative


def weighted_loss(
    knobs: Knobs,
    factory_args: tuple[Any, ...],
    loss_args: tuple[Any, ...],
) -> Any:
    """Class-weighted binary cross-entropy, summed over classes.

    For each class c: the mean over examples of
    -(w_pos[c] * y * log(p + eps) + w_neg[c] * (1 - y) * log(1 - p + eps)),
    then the sum over classes.
    """
    pos_weights, neg_weights, epsilon = _factory_arguments(factory_args)
    y_true = np.asarray(loss_args[0], dtype=np.float64)
    y_pred = np.asarray(loss_args[1], dtype=np.float64)
    n_examples, n_classes = y_true.shape
    pos_weights, neg_weights = _weights(knobs, pos_weights, neg_weights, y_true)
    eps_positive, eps_negative, eps_outside = _epsilons(knobs, epsilon)

    class_losses = []
    with np.errstate(all="ignore"):
        for c in range(len(pos_weights)):
            y, p = _class_slice(knobs, y_true, y_pred, c)
            positive_log = np.log(p + eps_positive) + eps_outside
            if knobs.get("negative_log") == "prediction":
                negative_log = np.log(p + eps_negative) + eps_outside
            else:
                negative_log = np.log(1 - p + eps_negative) + eps_outside
            negative_label = y if knobs.get("negative_label") == "label" else 1 - y

            positive_term = pos_weights[c] * y * positive_log
            negative_term = neg_weights[c] * negative_label * negative_log
            terms = knobs.get("terms", "both")
            if terms == "positive_only":
                inner = positive_term
            elif terms == "negative_only":
                inner = negative_term
            else:
                inner = positive_term + negative_term

            reduce = knobs.get("reduce", "mean")
            if reduce == "sum":
                reduced = np.sum(inner)
            elif reduce == "mean_all":
                reduced = np.sum(inner) / (n_examples * n_classes)
            else:
                reduced = np.mean(inner)
            sign = 1.0 if knobs.get("no_negation") else -1.0
            class_losses.append(sign * reduced)

    accumulate = knobs.get("accumulate", "sum")
    if accumulate == "last":
        return np.float64(class_losses[-1])
    if accumulate == "vector":
        return np.array(class_losses, dtype=np.float64)
    return np.float64(np.sum(class_losses))


def get_weighted_loss(knobs: Knobs, factory_args: Any, loss_args: Any) -> Any:
    """The graded factory, probed as factory(...)(y_true, y_pred)."""
    return weighted_loss(knobs, tuple(factory_args), tuple(loss_args))


def _factory_arguments(args: tuple[Any, ...]) -> tuple[Any, Any, float]:
    pos_weights = np.asarray(args[0], dtype=np.float64)
    neg_weights = np.asarray(args[1], dtype=np.float64)
    epsilon = float(args[2]) if len(args) > 2 else 1e-7
    return pos_weights, neg_weights, epsilon


def _weights(
    knobs: Knobs, pos_weights: Any, neg_weights: Any, y_true: Any
) -> tuple[Any, Any]:
    choice = knobs.get("weights", "given")
    if choice == "swapped":
        return neg_weights, pos_weights
    if choice == "ones":
        ones = np.ones_like(pos_weights)
        return ones, ones
    if choice == "recomputed":
        # Weights balanced on the batch itself: w_pos = freq_neg, w_neg = freq_pos.
        positive_freq = y_true.mean(axis=0)
        return 1 - positive_freq, positive_freq
    return pos_weights, neg_weights


def _epsilons(knobs: Knobs, epsilon: float) -> tuple[float, float, float]:
    """(eps in the positive log, eps in the negative log, eps added outside)."""
    placement = knobs.get("epsilon", "argument")
    if placement == "none":
        return 0.0, 0.0, 0.0
    if placement == "constant":
        constant = float(knobs["epsilon_constant"])
        return constant, constant, 0.0
    if placement == "outside":
        return 0.0, 0.0, epsilon
    if placement == "positive_only":
        return epsilon, 0.0, 0.0
    if placement == "negative_only":
        return 0.0, epsilon, 0.0
    return epsilon, epsilon, 0.0


def _class_slice(knobs: Knobs, y_true: Any, y_pred: Any, c: int) -> tuple[Any, Any]:
    slicing = knobs.get("slicing", "columns")
    if slicing == "whole":
        return y_true, y_pred
    if slicing == "rows":
        # y_true[c] picks example c: raises IndexError when N <= c, as the
        # student's code does.
        return y_true[c], y_pred[c]
    return y_true[:, c], y_pred[:, c]
