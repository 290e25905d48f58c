"""Exports beyond the gradebook: Gradescope results and the student package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grader.assignment import Assignment
from grader.comparing import format_values
from grader.diagnosing import DiagnosisTable
from grader.pipeline import SubmissionResult


def gradescope_results(result: SubmissionResult) -> dict[str, Any]:
    """Gradescope's results.json for one submission: a test per function."""
    if result.status == "error":
        return {"score": 0.0, "output": result.error_message or "",
                "tests": [], "visibility": "visible"}
    tests = []
    for function in result.functions.values():
        output = "All cases pass." if function.passed else "\n\n".join(
            d.message for d in function.diagnoses)
        tests.append({"name": function.name, "score": function.score,
                      "max_score": function.max_score, "output": output,
                      "visibility": "visible"})
    return {"score": result.score, "tests": tests, "visibility": "visible"}


def export_student_package(assignment: Assignment, folder: Path) -> list[Path]:
    """What students may have: public cases, their expected results, hints.

    Never the reference code, the knobs of the mistakes, or a hidden case.
    """
    folder.mkdir(parents=True, exist_ok=True)
    table = DiagnosisTable(assignment, public_only=True)
    cases = []
    for graded in assignment.functions:
        for case in assignment.cases_for(graded.name, public_only=True):
            expected = table.reference[graded.name][case.id]
            cases.append({
                "function": graded.name,
                "id": case.id,
                "description": case.description,
                "calls": [list(call) for call in case.calls],
                "expected": (f"raises {expected.error}" if expected.error else
                             [format_values(leaf) for leaf in expected.leaves]),
            })
    hints = [{"id": m.id, "function": m.function, "what": m.what, "fix": m.fix}
             for m in assignment.catalogue]
    written = [folder / "public_cases.json", folder / "hints.json",
               folder / "README.md"]
    written[0].write_text(json.dumps({"assignment": assignment.name,
                                      "cases": cases}, indent=2) + "\n",
                          encoding="utf-8")
    written[1].write_text(json.dumps(hints, indent=2) + "\n", encoding="utf-8")
    written[2].write_text(
        f"# {assignment.title}: material for students\n\n"
        "`public_cases.json` holds the public test cases and their expected "
        "results; `hints.json` the mistakes the grader recognises and what to "
        "change. Run `grader check your_notebook.ipynb` to check your work on "
        "the public cases. Grading also uses hidden cases, which are not "
        "included here.\n", encoding="utf-8")
    return written
