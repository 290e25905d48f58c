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


def freqs_body(body: str) -> str:
    """A `compute_class_freqs` whose body is `body`."""
    return "def compute_class_freqs(labels):\n" + "".join(
        f"    {line}\n" for line in body.splitlines())


def freqs_doing(code: str) -> str:
    """A `compute_class_freqs` that runs `code`, then answers correctly."""
    return freqs_body(code + "\np = labels.mean(axis=0)\nreturn p, 1 - p")


def grade_freqs_doing(grader: Grader, code: str,
                      imports: str = "import numpy as np\n") -> SubmissionResult:
    """Grade a notebook of `imports` and `freqs_doing(code)`."""
    return grade_cells(grader, imports, freqs_doing(code))


def diagnosis_ids(result: SubmissionResult, function: str) -> list[str]:
    return [d.id for d in result.functions[function].diagnoses]


def marked_line(source: str, marker: str = "# <-") -> int | None:
    """The 1-based line of `source` carrying the marker comment."""
    for number, line in enumerate(source.splitlines(), start=1):
        if marker in line:
            return number
    return None
