"""Shared fixtures: the default assignment, its diagnosis table, paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grader import mistake_outputs
from grader.assignment import Assignment, load_assignment
from grader.diagnosing import DiagnosisTable

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "student_submissions"
SHARED = ROOT.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def kept_mistake_outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite keeps mistake outputs in a folder of its own, not the
    user's cache; the CLI tests' subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("mistake-outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(mistake_outputs.CACHE_VARIABLE, str(folder))
        yield


@pytest.fixture(scope="session")
def assignment() -> Assignment:
    return load_assignment()


@pytest.fixture(scope="session")
def table(assignment: Assignment) -> DiagnosisTable:
    return DiagnosisTable(assignment)
