"""Generated submissions with two (and three) mistakes are diagnosed exactly.

A small code generator writes the weighted loss the way students do, with
any combination of catalogued mistakes switched on; the diagnosis must name
exactly that combination.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from grader.assignment import Assignment
from grader.diagnosing import compatible
from grader.options import GradingOptions
from grader.pipeline import Grader
from tests.harness import diagnosis_ids, grade_cells

IMPORTS = "import numpy as np\nfrom keras import backend as K\n"

#: Each mistake as the code choice a student makes.
CODE_CHOICES = {
    "loss.sum_instead_of_mean": {"reduce": "sum"},
    "loss.missing_epsilon": {"epsilon": "none"},
    "loss.epsilon_hardcoded": {"epsilon": "keras"},
    "loss.epsilon_outside_log": {"epsilon": "outside"},
    "loss.epsilon_one_term": {"epsilon": "positive_only"},
    "loss.swapped_weights": {"weights": "swapped"},
    "loss.weights_ignored": {"weights": "none"},
    "loss.missing_negation": {"sign": ""},
    "loss.missing_negative_term": {"terms": "positive"},
    "loss.missing_positive_term": {"terms": "negative"},
    "loss.wrong_negative_log": {"negative_log": "prediction"},
    "loss.missing_label_complement": {"negative_label": "label"},
    "loss.unsliced_columns": {"slicing": "whole"},
    "loss.rows_instead_of_columns": {"slicing": "rows"},
    "loss.overwrites_accumulator": {"op": "="},
    "loss.numpy_result": {"result": "numpy"},
}


def student_loss(choices: dict[str, str]) -> str:
    """The weighted loss as a student writes it, with the given choices."""
    slicing = choices.get("slicing", "columns")
    y, p = {"columns": ("y_true[:, i]", "y_pred[:, i]"), "whole": ("y_true", "y_pred"),
            "rows": ("y_true[i]", "y_pred[i]")}[slicing]
    eps = choices.get("epsilon", "argument")

    def log(argument: str, term: str) -> str:
        if eps == "none" or (eps == "positive_only" and term == "negative"):
            return f"K.log({argument})"
        if eps == "keras":
            return f"K.log({argument} + K.epsilon())"
        if eps == "outside":
            return f"(K.log({argument}) + epsilon)"
        return f"K.log({argument} + epsilon)"

    weights = choices.get("weights", "given")
    w_pos, w_neg = {"given": ("pos_weights[i] * ", "neg_weights[i] * "),
                    "swapped": ("neg_weights[i] * ", "pos_weights[i] * "),
                    "none": ("", "")}[weights]
    negative_label = f"(1 - {y})" if choices.get("negative_label") != "label" else y
    negative_log = log(f"1 - {p}", "negative") \
        if choices.get("negative_log") != "prediction" else log(p, "negative")
    positive = f"{w_pos}{y} * {log(p, 'positive')}"
    negative = f"{w_neg}{negative_label} * {negative_log}"
    terms = choices.get("terms", "both")
    inner = {"both": f"{positive}\n                + {negative}",
             "positive": positive, "negative": negative}[terms]
    reduce = "K.sum" if choices.get("reduce") == "sum" else "K.mean"
    returned = "np.float32(loss)" if choices.get("result") == "numpy" else "loss"
    return (
        "def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):\n"
        "    def weighted_loss(y_true, y_pred):\n"
        "        loss = 0.0\n"
        "        for i in range(len(pos_weights)):\n"
        f"            loss {choices.get('op', '+=')} {choices.get('sign', '-')}"
        f"{reduce}({inner})\n"
        f"        return {returned}\n"
        "    return weighted_loss\n"
    )


def code_compatible(ids: tuple[str, ...]) -> bool:
    keys = [key for mistake in ids for key in CODE_CHOICES[mistake]]
    return len(keys) == len(set(keys))


def combinations(assignment: Assignment, size: int) -> list[tuple[str, ...]]:
    found = []
    for ids in itertools.combinations(sorted(CODE_CHOICES), size):
        mistakes = tuple(assignment.mistake(i) for i in ids)
        value = tuple(m for m in mistakes if m.kind == "value")
        if code_compatible(ids) and compatible(value):
            found.append(ids)
    return found


@pytest.fixture(scope="module")
def grader(assignment: Assignment) -> Iterator[Grader]:
    with Grader(assignment, GradingOptions()) as grader:
        yield grader


def diagnose_generated(grader: Grader, ids: tuple[str, ...]) -> list[str]:
    choices: dict[str, str] = {}
    for mistake in ids:
        choices.update(CODE_CHOICES[mistake])
    result = grade_cells(grader, IMPORTS, student_loss(choices))
    return diagnosis_ids(result, "get_weighted_loss")


def test_the_generated_correct_loss_passes(grader: Grader) -> None:
    assert diagnose_generated(grader, ()) == []


def test_every_pair_that_can_co_occur_is_diagnosed_exactly(
    grader: Grader, assignment: Assignment
) -> None:
    pairs = combinations(assignment, 2)
    assert len(pairs) > 80
    wrong = {ids: got for ids in pairs
             if (got := diagnose_generated(grader, ids)) != list(ids)}
    assert wrong == {}


def test_at_least_95_percent_of_triples_are_diagnosed_exactly(
    grader: Grader, assignment: Assignment
) -> None:
    # Every fifth triple keeps the suite fast; the sample is fixed.
    triples = combinations(assignment, 3)[::5]
    exact = sum(diagnose_generated(grader, ids) == list(ids) for ids in triples)
    assert len(triples) > 50
    assert exact / len(triples) >= 0.95
