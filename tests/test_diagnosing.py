"""Diagnosis: cases separate every mistake set; the engine is assignment-free."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from grader.assignment import Assignment, load_assignment
from grader.comparing import Expected
from grader.diagnosing import DiagnosisTable
from grader.options import GradingOptions
from grader.pipeline import Grader
from tests.conftest import DATA
from tests.harness import diagnosis_ids, grade_cells


def same_outputs(first: Expected, second: Expected, assignment: Assignment) -> bool:
    if first.error or second.error:
        return first.error == second.error
    if first.several != second.several or len(first.leaves) != len(second.leaves):
        return False
    tolerance = assignment.tolerance
    for got, want in zip(first.leaves, second.leaves, strict=True):
        if got.shape != want.shape:
            return False
        with np.errstate(invalid="ignore"):
            allowed = tolerance.atol + tolerance.rtol * np.abs(want)
            close = ((np.isnan(got) & np.isnan(want))
                     | (np.isinf(want) & (got == want))
                     | (np.isfinite(got) & np.isfinite(want)
                        & (np.abs(got - want) <= allowed)))
        if not close.all():
            return False
    return True


@pytest.mark.parametrize("function", ["compute_class_freqs", "get_weighted_loss"])
def test_every_two_mistake_sets_of_size_two_are_told_apart(
    table: DiagnosisTable, assignment: Assignment, function: str
) -> None:
    sets = [((), table.reference[function])]
    for level in table.candidates[function][:2]:
        sets += [(tuple(m.id for m in c.mistakes), c.predictions) for c in level]
    # Variants of one mistake set may coincide; distinct sets may not.
    inseparable = [
        (first_ids, second_ids)
        for (first_ids, first), (second_ids, second) in itertools.combinations(sets, 2)
        if first_ids != second_ids
        and all(same_outputs(first[c], second[c], assignment) for c in first)
    ]
    assert inseparable == []
    assert len(sets) > 50


def test_reference_numbers_of_the_course(table: DiagnosisTable) -> None:
    freqs = table.reference["compute_class_freqs"]["freqs_public_course_labels"]
    np.testing.assert_allclose(freqs.leaves[0], [0.8, 0.4, 0.8], atol=1e-6)
    np.testing.assert_allclose(freqs.leaves[1], [0.2, 0.6, 0.2], atol=1e-6)
    for case in ("loss_public_predictions_07", "loss_public_predictions_03"):
        loss = table.reference["get_weighted_loss"][case]
        assert abs(float(loss.leaves[0]) - -0.4956203) < 1e-6


@pytest.fixture(scope="module")
def mse_grader() -> Iterator[Grader]:
    with Grader(load_assignment(DATA / "mse"), GradingOptions()) as grader:
        yield grader


MSE = "import numpy as np\n\ndef mean_squared_error(y, p):\n    return {body}\n"


@pytest.mark.parametrize("body, ids", [
    ("np.mean((y - p) ** 2)", []),
    ("np.sum((y - p) ** 2)", ["mse.summed"]),
    ("np.mean(np.abs(y - p))", ["mse.absolute"]),
    ("np.sum(np.abs(y - p))", ["mse.absolute", "mse.summed"]),
    ("np.max((y - p) ** 2)", ["function.unrecognised"]),
    ("str(y)", ["function.unrecognised"]),
])
def test_a_second_assignment_needs_no_engine_change(
    mse_grader: Grader, body: str, ids: list[str]
) -> None:
    result = grade_cells(mse_grader, MSE.format(body=body))
    assert diagnosis_ids(result, "mean_squared_error") == ids


def test_second_assignment_evidence_and_score(mse_grader: Grader) -> None:
    result = grade_cells(mse_grader, MSE.format(body="np.sum((y - p) ** 2)"))
    function = result.functions["mean_squared_error"]
    assert function.score == 1.0 and function.max_score == 5.0
    assert function.diagnoses[0].message == (
        "The squared errors are added up instead of averaged. On the public case "
        "(3 values) you return 4.25, 3 x the expected 1.4167. See cell 1, line 4. "
        "Divide by the number of values."
    )


def test_one_number_is_compared_by_the_same_rule_as_arrays() -> None:
    # Single numbers take a shorter path; it must agree with the array rule
    # everywhere: tolerance edges, nan, infinities of either sign.
    from grader.assignment import Tolerance
    from grader.comparing import _close

    tolerance = Tolerance(rtol=1e-4, atol=1e-6)
    numbers = [0.0, -0.0, 1.0, -1.0, 1.00009, 1.00011, 5e-7, 2e-6, 1e300,
               np.nan, np.inf, -np.inf]
    agreed = [
        bool(_close(np.float64(a), np.float64(b), tolerance))
        == bool(_close(np.array([a]), np.array([b]), tolerance)[0])
        for a, b in itertools.product(numbers, repeat=2)
    ]
    assert all(agreed)
    assert bool(_close(np.float64(1.0), np.float64(1.00009), tolerance))
    assert not bool(_close(np.float64(1.0), np.float64(1.00011), tolerance))
    assert bool(_close(np.float64(np.nan), np.float64(np.nan), tolerance))
    assert not bool(_close(np.float64(np.inf), np.float64(-np.inf), tolerance))
