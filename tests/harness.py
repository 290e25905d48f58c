"""Grade code given as text, without files: for tests of the diagnosis."""

from __future__ import annotations

from pathlib import Path

from grader.pipeline import Grader, SubmissionResult
from grader.reading import CodeCell, Notebook


def notebook_of(*cells: str, name: str = "test.ipynb") -> Notebook:
    """A notebook whose code cells are `cells`, numbered 1, 2, ..."""
    code_cells = tuple(CodeCell(number, source)
                       for number, source in enumerate(cells, start=1))
    return Notebook(Path(name), 4, code_cells, digest="0" * 64)


def grade_cells(grader: Grader, *cells: str) -> SubmissionResult:
    return grader.grade_notebook(notebook_of(*cells))


def diagnosis_ids(result: SubmissionResult, function: str) -> list[str]:
    return [d.id for d in result.functions[function].diagnoses]


def marked_line(source: str, marker: str = "# <-") -> int | None:
    """The 1-based line of `source` carrying the marker comment."""
    for number, line in enumerate(source.splitlines(), start=1):
        if marker in line:
            return number
    return None
