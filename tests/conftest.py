"""Shared fixtures: the default assignment, its diagnosis table, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.assignment import Assignment, load_assignment
from grader.diagnosing import DiagnosisTable

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "student_submissions"
SHARED = ROOT.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def assignment() -> Assignment:
    return load_assignment()


@pytest.fixture(scope="session")
def table(assignment: Assignment) -> DiagnosisTable:
    return DiagnosisTable(assignment)
