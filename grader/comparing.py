"""Stage 5: compare what a function returned with what was expected.

Comparison returns facts, not words: whether two outcomes agree and, when
they do not, where the first difference is. Values are compared as float64
with the assignment's tolerance; nan must meet nan and inf the same inf.
The result's type is judged separately (see diagnosing), so a right value of
the wrong type is still recognised as right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.assignment import Tolerance
from grader.probing import CaseOutcome, Observed

#: Array elements shown when a value is quoted in a hint.
SHOWN_ELEMENTS = 8
LEAF_KINDS = ("ndarray", "numpy_scalar", "python_scalar", "tensor", "list")


@dataclass(frozen=True)
class Expected:
    """A model output for one case, reduced to comparable facts."""

    #: Exception type name when the computation raises, else None.
    error: str | None
    #: Float64 arrays, one per returned value; a single value is one leaf.
    leaves: tuple[np.ndarray, ...] = ()
    #: True when the function returns several values (a tuple).
    several: bool = False


@dataclass(frozen=True)
class Difference:
    """The first visible difference between an outcome and its expectation."""

    leaf: int
    got: str
    expected: str
    got_shape: tuple[int, ...] | None
    expected_shape: tuple[int, ...] | None
    #: got / expected for scalars when both are finite and expected is not 0.
    ratio: float | None
    got_type: str


def expected_from(compute: Any) -> Expected:
    """Run a model computation (a zero-argument callable) into an Expected."""
    try:
        value = compute()
    except Exception as exc:  # the modelled student code raises this too
        return Expected(error=type(exc).__name__)
    if isinstance(value, tuple):
        leaves = tuple(np.asarray(v, dtype=np.float64) for v in value)
        return Expected(error=None, leaves=leaves, several=True)
    return Expected(error=None, leaves=(np.asarray(value, dtype=np.float64),))


def result_leaves(result: Observed | None) -> tuple[Observed, ...] | None:
    """The returned values as leaves; None when the structure is unreadable."""
    if result is None:
        return None
    if result.kind in LEAF_KINDS:
        return (result,)
    if result.kind in ("tuple", "list") and result.items:
        if all(item.kind in LEAF_KINDS for item in result.items):
            return result.items
    return None


def matches(outcome: CaseOutcome, expected: Expected, tolerance: Tolerance) -> bool:
    """True when the outcome is what the expectation predicts."""
    if outcome.timed_out:
        return False
    if outcome.error is not None:
        return expected.error is not None and outcome.error.type == expected.error
    if expected.error is not None:
        return False
    leaves = result_leaves(outcome.result)
    if leaves is None or len(leaves) != len(expected.leaves):
        return False
    several = outcome.result is not None and outcome.result.kind in ("tuple", "list") \
        and outcome.result.items != ()
    if several != expected.several:
        return False
    return all(
        _leaf_matches(leaf, want, tolerance)
        for leaf, want in zip(leaves, expected.leaves, strict=True)
    )


def _leaf_matches(leaf: Observed, want: np.ndarray, tolerance: Tolerance) -> bool:
    got = leaf.values
    if got is None:
        return False
    if got.shape != want.shape:
        # A single number returned as shape (1,) is still that number.
        if not (want.shape == () and got.size == 1):
            return False
        got = got.reshape(())
    return bool(np.all(_close(got, want, tolerance)))


def _close(got: np.ndarray, want: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    if got.ndim == 0 and want.ndim == 0:
        # One number, as most results are: the same rule without the cost
        # of NumPy's machinery, paid tens of times per submission.
        mine, wanted = float(got), float(want)
        if math.isnan(mine) or math.isnan(wanted):
            return np.bool_(math.isnan(mine) and math.isnan(wanted))
        if math.isinf(mine) or math.isinf(wanted):
            return np.bool_(mine == wanted)
        allowed = tolerance.atol + tolerance.rtol * abs(wanted)
        return np.bool_(abs(mine - wanted) <= allowed)
    both_nan = np.isnan(got) & np.isnan(want)
    with np.errstate(invalid="ignore"):
        same_inf = np.isinf(want) & (got == want)
        finite = np.isfinite(got) & np.isfinite(want)
        near = np.abs(got - want) <= tolerance.atol + tolerance.rtol * np.abs(want)
    return both_nan | same_inf | (finite & near)


def first_difference(
    outcome: CaseOutcome, expected: Expected, tolerance: Tolerance
) -> Difference:
    """Describe how the outcome differs from the expectation (or not)."""
    if outcome.error is not None:
        return Difference(0, f"{outcome.error.type}: {outcome.error.message}",
                          _describe_expected(expected, 0), None,
                          _shape(expected, 0), None, outcome.error.type)
    leaves = result_leaves(outcome.result) or ()
    for index, want in enumerate(expected.leaves):
        leaf = leaves[index] if index < len(leaves) else None
        if leaf is None or not _leaf_matches(leaf, want, tolerance):
            return _difference(index, leaf, outcome.result, want)
    leaf = leaves[0] if leaves else None
    want = expected.leaves[0] if expected.leaves else np.asarray(np.nan)
    return _difference(0, leaf, outcome.result, want)


def _difference(
    index: int, leaf: Observed | None, result: Observed | None, want: np.ndarray
) -> Difference:
    ratio = None
    if leaf is not None and leaf.values is not None and leaf.values.size == 1 \
            and want.size == 1:
        got_value, want_value = float(leaf.values.reshape(-1)[0]), float(want)
        if np.isfinite(got_value) and np.isfinite(want_value) and want_value != 0:
            ratio = got_value / want_value
    shown = describe(leaf) if leaf is not None else describe(result)
    return Difference(
        leaf=index,
        got=shown,
        expected=format_values(want),
        got_shape=leaf.shape if leaf is not None else None,
        expected_shape=tuple(want.shape),
        ratio=ratio,
        got_type=(leaf or result).type_name if (leaf or result) else "nothing",
    )


def _describe_expected(expected: Expected, index: int) -> str:
    if expected.error:
        return f"a {expected.error}"
    if index < len(expected.leaves):
        return format_values(expected.leaves[index])
    return "nothing"


def _shape(expected: Expected, index: int) -> tuple[int, ...] | None:
    if index < len(expected.leaves):
        return tuple(expected.leaves[index].shape)
    return None


def describe(observed: Observed | None) -> str:
    """A short, bounded text for a returned value, safe to show a student."""
    if observed is None or observed.kind == "none":
        return "None"
    if observed.values is not None:
        return format_values(observed.values)
    if observed.kind in ("tuple", "list"):
        inner = ", ".join(describe(item) for item in observed.items[:3])
        more = ", ..." if len(observed.items) > 3 else ""
        return f"a {observed.kind} ({inner}{more})"
    if observed.kind == "callable":
        return "a function"
    if observed.shape is not None:
        return f"a {observed.type_name} of shape {observed.shape}"
    return f"an object of type {observed.type_name}"


def format_values(values: np.ndarray) -> str:
    if values.ndim == 0:
        return format_number(float(values))
    flat = values.reshape(-1)
    shown = ", ".join(format_number(float(v)) for v in flat[:SHOWN_ELEMENTS])
    if flat.size > SHOWN_ELEMENTS:
        shown += f", ... ({flat.size} values)"
    if values.ndim > 1:
        return f"[{shown}] (shape {values.shape})"
    return f"[{shown}]"


def format_number(value: float) -> str:
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"
