"""The student's self-check: public cases only, exit status, in-notebook use."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLES


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader", "check", *args],
                          capture_output=True, text=True, timeout=300)


def test_a_passing_notebook_exits_0_and_mentions_hidden_cases(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = check(str(SAMPLES / "correct_vectorised.ipynb"), "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "PASS get_weighted_loss" in done.stdout
    assert "Only the public cases were run." in done.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["submissions"][0]["score"] == 20.0
    assert report["submissions"][0]["student"] == "correct_vectorised"


def test_a_failing_notebook_exits_1_with_the_hint() -> None:
    done = check(str(SAMPLES / "sum_instead_of_mean.ipynb"))
    assert done.returncode == 1
    assert "FAIL get_weighted_loss" in done.stdout
    assert "exactly 4 x the -0.4956 that averaging gives" in done.stdout


def test_a_missing_notebook_is_a_usage_error(tmp_path: Path) -> None:
    assert check(str(tmp_path / "nope.ipynb")).returncode == 2


def test_check_a_function_from_inside_a_notebook(tmp_path: Path, capsys) -> None:
    module_file = tmp_path / "student_cell.py"
    module_file.write_text(
        "import numpy as np\n\n"
        "# the student's own notes\n\n"
        "def compute_class_freqs(labels):\n"
        "    positive = np.sum(labels, axis=0) / labels.shape[1]\n"
        "    return positive, 1 - positive\n",
        encoding="utf-8",
    )
    spec = importlib.util.spec_from_file_location("student_cell", module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    from grader import check as check_in_notebook

    assert check_in_notebook(module.compute_class_freqs) is False
    printed = capsys.readouterr().out
    assert "FAIL compute_class_freqs" in printed
    assert "divided by the number of classes" in printed
    # Where the line is in the student's own cell (here, file), quoted.
    assert ("See line 6 of the cell that defines it: `positive = np.sum(labels, "
            "axis=0) / labels.shape[1]`.") in printed
    assert "See cell" not in printed
    assert "get_weighted_loss" not in printed


def test_checking_what_is_not_a_graded_function_says_what_to_pass(
        capsys) -> None:
    from grader import check as check_in_notebook

    def helper(labels):  # a function of the notebook, but not a graded one
        return labels

    assert check_in_notebook(helper) is False
    assert check_in_notebook(42) is False  # type: ignore[arg-type]
    assert check_in_notebook(len) is False  # type: ignore[arg-type]
    said = capsys.readouterr().out.split("\n")
    graded = "compute_class_freqs, get_weighted_loss"
    assert said[:3] == [
        f"Cannot check `helper`: pass one of the graded functions ({graded}) "
        "itself, or the path of your notebook.",
        "Cannot check a value of type int: pass one of the graded functions "
        f"({graded}) itself, or the path of your notebook.",
        f"Cannot check `len`: pass one of the graded functions ({graded}) "
        "itself, or the path of your notebook."]


def test_checking_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = check(str(tmp_path))
    assert done.returncode == 2
    assert f"{tmp_path}: is a folder; check one notebook" in done.stderr
