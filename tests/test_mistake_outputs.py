"""The outputs of every mistake set, kept on disk between runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grader import mistake_outputs
from grader.assignment import Assignment
from grader.diagnosing import DiagnosisTable
from grader.pipeline import hidden_from_sandbox


def _flat(table: DiagnosisTable) -> list[tuple]:
    rows = []
    for name, levels in table.candidates.items():
        for level in levels:
            for candidate in level:
                for case, expected in sorted(candidate.predictions.items()):
                    rows.append((name, tuple(m.id for m in candidate.mistakes),
                                 repr(sorted(candidate.knobs.items())), case,
                                 expected.error, expected.several,
                                 tuple((leaf.shape, _values(leaf))
                                       for leaf in expected.leaves)))
    return rows


def _values(leaf: np.ndarray) -> tuple:
    # nan's sign bit is not kept through JSON, and means nothing here.
    return tuple("nan" if np.isnan(x) else float(x) for x in leaf.ravel())


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(mistake_outputs.CACHE_VARIABLE, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_stored_outputs_are_the_computed_ones(
        assignment: Assignment, cache: Path) -> None:
    computed = DiagnosisTable(assignment)
    stored = list(cache.glob("mistakes-*-all-*.json"))
    assert len(stored) == 1
    loaded = DiagnosisTable(assignment)
    rows = _flat(loaded)
    assert rows == _flat(computed)
    # 30 catalogued mistakes give well over a thousand sets for the loss.
    assert len({row[:3] for row in rows if row[0] == "get_weighted_loss"}) > 1000
    assert any(np.isnan(leaf).any() for level in loaded.candidates["get_weighted_loss"]
               for c in level for e in c.predictions.values() for leaf in e.leaves)


def test_an_unusable_file_is_computed_again(
        assignment: Assignment, cache: Path) -> None:
    computed = DiagnosisTable(assignment)
    [stored] = cache.glob("mistakes-*.json")
    stored.write_text('{"get_weighted_loss": [[{"mistakes": ["no.such"]}]]}',
                      encoding="utf-8")
    assert _flat(DiagnosisTable(assignment)) == _flat(computed)
    assert stored.stat().st_size > 100_000  # written again, whole


def test_public_only_outputs_are_kept_apart(
        assignment: Assignment, cache: Path) -> None:
    DiagnosisTable(assignment)
    DiagnosisTable(assignment, public_only=True)
    assert len(list(cache.glob("mistakes-*-all-*.json"))) == 1
    assert len(list(cache.glob("mistakes-*-public-*.json"))) == 1


def test_keeping_can_be_turned_off(assignment: Assignment, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mistake_outputs.CACHE_VARIABLE, "off")
    DiagnosisTable(assignment)
    assert mistake_outputs.cache_folder() is None
    assert list(tmp_path.iterdir()) == []


def test_the_sandbox_hides_the_kept_outputs(
        assignment: Assignment, cache: Path) -> None:
    # They hold the reference's outputs on the hidden cases.
    assert str(cache.resolve()) in hidden_from_sandbox(assignment, ())
