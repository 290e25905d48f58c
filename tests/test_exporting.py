"""Exports: Gradescope's results.json and the student package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from grader.assignment import Assignment
from tests.conftest import SAMPLES


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader", *args],
                          capture_output=True, text=True, timeout=300)


def test_gradescope_results_for_one_submission(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = run("grade", str(SAMPLES / "swapped_weights.ipynb"), "--gradescope",
               str(out), "--gradebook", str(tmp_path / "gb"))
    assert done.returncode == 0, done.stderr
    assert "\n1 submission: 1 graded, 0 with full marks" in done.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["score"] == 12.0
    assert [(t["name"], t["score"], t["max_score"], t["visibility"])
            for t in results["tests"]] == [
        ("compute_class_freqs", 10.0, 10.0, "visible"),
        ("get_weighted_loss", 2.0, 10.0, "visible")]
    assert results["tests"][1]["output"].startswith(
        "The positive and negative weights are swapped.")


def test_gradescope_feedback_quotes_nothing_from_hidden_cases(tmp_path: Path) -> None:
    import nbformat

    code = ("import numpy as np\n"
            "def compute_class_freqs(labels):\n"
            "    if labels.shape[0] != 5:\n"
            "        raise ValueError('LEAK' + repr(labels.tolist()))\n"
            "    p = labels.mean(axis=0)\n"
            "    return p, 1 - p\n")
    notebook = tmp_path / "leaking.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]),
                   str(notebook))
    out = tmp_path / "results.json"
    done = run("grade", str(notebook), "--gradescope", str(out),
               "--gradebook", str(tmp_path / "gb"))
    assert done.returncode == 0, done.stderr
    freqs = json.loads(out.read_text(encoding="utf-8"))["tests"][0]
    assert freqs["score"] == 0.0
    assert freqs["output"].startswith(
        "`compute_class_freqs` raised ValueError on a hidden")
    assert "LEAK" not in out.read_text(encoding="utf-8")


def test_gradescope_needs_exactly_one_submission(tmp_path: Path) -> None:
    done = run("grade", str(SAMPLES), "--gradescope", str(tmp_path / "r.json"))
    assert done.returncode == 2
    assert "one submission's results" in done.stderr


def test_the_student_package_has_no_reference_and_no_hidden_case(
    tmp_path: Path, assignment: Assignment
) -> None:
    folder = tmp_path / "package"
    done = run("export-student", str(folder))
    assert done.returncode == 0, done.stderr
    text = "".join(p.read_text(encoding="utf-8") for p in folder.iterdir())
    compact = "".join(text.split())

    model_lines = [line.strip() for line in
                   (assignment.root / "model.py").read_text().splitlines()
                   if len(line.strip()) > 25 and not line.strip().startswith("#")]
    assert model_lines and not [line for line in model_lines if line in text]
    hidden = [case for case in assignment.cases if not case.public]
    for case in hidden:
        assert case.id not in text
        for call in case.calls:
            for argument in call:
                if isinstance(argument, dict):
                    assert "".join(json.dumps(argument["array"]).split()) not in compact
    assert "knobs" not in text and "variants" not in text

    cases = json.loads((folder / "public_cases.json").read_text())["cases"]
    assert [c["id"] for c in cases] == ["freqs_public_course_labels",
                                        "loss_public_predictions_07",
                                        "loss_public_predictions_03"]
    assert cases[0]["expected"] == ["[0.8, 0.4, 0.8]", "[0.2, 0.6, 0.2]"]
    assert cases[1]["expected"] == ["-0.4956"]
