"""The CLI on student_submissions/ reproduces the manifest, with both engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES

MANIFEST = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))


def run_grader(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grader", *args],
        capture_output=True, text=True, timeout=600,
    )


def check_against_manifest(report: dict) -> None:
    by_name = {Path(s["path"]).name: s for s in report["submissions"]}
    assert sorted(by_name) == sorted(MANIFEST)
    for name, expected in MANIFEST.items():
        got = by_name[name]
        assert got["status"] == expected["status"], name
        if expected["status"] == "error":
            assert got["error"]["kind"] == expected["error_kind"], name
            continue
        for function, verdict in expected["functions"].items():
            graded = got["functions"][function]
            ids = [d["id"] for d in graded["diagnoses"]]
            assert (name, function, graded["passed"], ids) == (
                name, function, verdict["passed"], verdict["diagnoses"])


@pytest.fixture(scope="module")
def fork_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("e2e") / "out.json"
    csv_path = out.with_suffix(".csv")
    done = run_grader("grade", str(SAMPLES), "--json", str(out), "--csv",
                      str(csv_path), "-j", "2", "--gradebook", str(out.parent / "gb"))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    report["_csv"] = csv_path.read_text(encoding="utf-8")
    report["_stdout"] = done.stdout
    return report


def test_fork_engine_reproduces_the_manifest(fork_report: dict) -> None:
    check_against_manifest(fork_report)


def test_json_contract(fork_report: dict) -> None:
    assert fork_report["grader_version"] == "0.1.0"
    assert fork_report["assignment"]["name"] == "chest_xray"
    first = fork_report["submissions"][0]
    assert set(first) >= {"path", "status", "error", "score", "max_score", "functions"}
    loss = next(s for s in fork_report["submissions"]
                if s["path"].endswith("sum_instead_of_mean.ipynb"))
    assert loss["score"] == 12.0 and loss["max_score"] == 20.0
    diagnosis = loss["functions"]["get_weighted_loss"]["diagnoses"][0]
    assert set(diagnosis) >= {"id", "message", "line"}
    assert diagnosis["line"] == 32 and diagnosis["cell"] == 23


def test_csv_has_one_row_per_submission(fork_report: dict) -> None:
    lines = fork_report["_csv"].strip().splitlines()
    assert lines[0].startswith("student,path,status,error_kind,score,max_score,"
                               "compute_class_freqs_score,get_weighted_loss_score")
    assert len(lines) == 1 + len(MANIFEST)
    row = next(line for line in lines if "three_headline_mistakes" in line)
    assert row.startswith("three_headline_mistakes,")
    assert row.endswith(
        ",graded,,10.0,20.0,10.0,0.0,,"
        "loss.missing_epsilon loss.numpy_result loss.sum_instead_of_mean")


def test_terminal_summary_names_file_score_and_hint(fork_report: dict) -> None:
    out = fork_report["_stdout"]
    assert "12/20  " in out and "sum_instead_of_mean.ipynb" in out
    assert "loss.sum_instead_of_mean" in out
    assert "ERROR  " in out and "truncated.ipynb: invalid_json" in out
    assert "19 submissions: 18 graded, 7 with full marks, 1 could not be read." in out


def test_kernel_engine_agrees_with_the_fork_engine(
    fork_report: dict, tmp_path: Path
) -> None:
    out = tmp_path / "kernel.json"
    done = run_grader("grade", str(SAMPLES), "--engine", "kernel", "--json",
                      str(out), "-j", "2", "-q", "--gradebook", str(tmp_path / "gb"))
    assert done.returncode == 0, done.stderr
    kernel = json.loads(out.read_text(encoding="utf-8"))
    check_against_manifest(kernel)

    def verdicts(report: dict) -> dict:
        return {
            s["path"]: (s["status"], s["score"], {
                name: [d["id"] for d in f["diagnoses"]]
                for name, f in s["functions"].items()
            })
            for s in report["submissions"]
        }

    assert verdicts(kernel) == verdicts(fork_report)


def test_full_mode_reproduces_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "full.json"
    done = run_grader("grade", str(SAMPLES), "--full", "--json", str(out), "-j", "2",
                      "-q", "--gradebook", str(tmp_path / "gb"))
    assert done.returncode == 0, done.stderr
    check_against_manifest(json.loads(out.read_text(encoding="utf-8")))


def test_terminal_lines_come_in_the_order_given(fork_report: dict) -> None:
    lines = [line for line in fork_report["_stdout"].splitlines()
             if line.startswith(("   ", "ERROR")) and ".ipynb" in line
             and not line.startswith("       ")]
    names = [Path(line.split()[1].rstrip(":")).name
             for line in lines]
    assert names == sorted(MANIFEST)
