"""Nothing already graded is lost: SIGKILL mid-batch, then resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader.reading import RESUBMIT
from tests.conftest import SAMPLES


def make_batch(folder: Path, copies: int) -> int:
    """Copies of the samples, each with different bytes (so a new digest)."""
    count = 0
    for copy in range(copies):
        for sample in sorted(SAMPLES.glob("*.ipynb")):
            target = folder / f"{copy}_{sample.name}"
            shutil.copy(sample, target)
            with target.open("a", encoding="utf-8") as handle:
                handle.write("\n" * (copy + 1))  # JSON allows trailing blanks
            count += 1
    return count


def rows(gradebook: Path) -> int:
    if not gradebook.exists():
        return 0
    with sqlite3.connect(gradebook) as db:
        try:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def grade(folder: Path, gradebook: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "grader", "grade", str(folder), "-j", "1", "-q",
         "--gradebook", str(gradebook), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def said_by(run: subprocess.Popen[str]) -> str:
    """What a run printed, its lines joined (the terminal's width wraps
    them), once it ended well."""
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    return " ".join(stdout.split())


def test_sigkill_mid_batch_loses_nothing_and_resume_adds_no_duplicates(
    tmp_path: Path,
) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    total = make_batch(batch, copies=3)
    gradebook = tmp_path / "grades.sqlite"

    first = grade(batch, gradebook)
    deadline = time.monotonic() + 120
    while rows(gradebook) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = rows(gradebook)
    assert kept >= 5

    out = tmp_path / "out.json"
    second = grade(batch, gradebook, "--json", str(out))
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert rows(gradebook) == total
    report = json.loads(out.read_text(encoding="utf-8"))
    assert len(report["submissions"]) == total
    if kept < total:
        assert f"({kept} already in {gradebook};" in stdout

    with sqlite3.connect(gradebook) as db:
        duplicates = db.execute(
            "SELECT count(*) FROM (SELECT digest FROM results GROUP BY digest "
            "HAVING count(*) > 1)").fetchone()[0]
        sums = db.execute(
            "SELECT count(*) FROM diagnoses WHERE diagnosis_id = "
            "'loss.sum_instead_of_mean'").fetchone()[0]
    assert duplicates == 0
    assert sums == 3 * 2  # two sample notebooks sum over examples, three copies


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux")
def test_workers_end_with_a_killed_coordinator(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    make_batch(batch, copies=3)
    gradebook = tmp_path / "grades.sqlite"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "grader", "grade", str(batch), "-j", "2", "-q",
         "--gradebook", str(gradebook)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 120
    while rows(gradebook) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = Path(f"/proc/{coordinator.pid}/task/{coordinator.pid}/children")
    workers = [int(pid) for pid in children.read_text().split()]
    coordinator.kill()
    coordinator.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) >= 2
    assert [pid for pid in workers if _alive(pid)] == []
    # No zip, so no folder to unpack into, left behind by the kill.
    assert list(scratch.glob("grader-unpacked-*")) == []


def test_fresh_grades_again(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(SAMPLES / "wrong_axis.ipynb", batch)
    gradebook = tmp_path / "grades.sqlite"
    for extra, expected in (((), False), ((), True), (("--fresh",), False)):
        done = grade(batch, gradebook, *extra)
        stdout, _ = done.communicate(timeout=120)
        assert done.returncode == 0
        assert ("already in" in stdout) is expected
    assert rows(gradebook) == 1


def test_identical_files_of_two_students_each_keep_a_row(tmp_path: Path) -> None:
    # An untouched copy of the assignment, handed in by two students: the
    # second takes the first's result, and both are in the gradebook.
    batch = tmp_path / "batch"
    for student in ("alice", "bob"):
        (batch / student).mkdir(parents=True)
    shutil.copy(SAMPLES / "wrong_axis.ipynb", batch / "alice" / "x.ipynb")
    gradebook = tmp_path / "grades.sqlite"
    first = grade(batch, gradebook)
    first.communicate(timeout=120)
    shutil.copy(SAMPLES / "wrong_axis.ipynb", batch / "bob" / "x.ipynb")
    said = [said_by(grade(batch, gradebook)) for _run in range(2)]
    assert "(2 already in" in said[0]
    assert "1 of them identical to files graded before;" in said[0]
    assert "(2 already in" in said[1] and "identical to files" not in said[1]
    with sqlite3.connect(gradebook) as db:
        stored = db.execute("SELECT student, score FROM results ORDER BY student"
                            ).fetchall()
        mistakes = db.execute("SELECT count(DISTINCT path) FROM diagnoses WHERE "
                              "diagnosis_id = 'freqs.wrong_axis'").fetchone()[0]
    assert stored == [("alice", 12.0), ("bob", 12.0)]
    assert mistakes == 2


def test_a_result_copied_from_an_identical_file_names_its_own_file(
        tmp_path: Path) -> None:
    # Empty files, which many students hand in: the second student's
    # message must not name the first one's file.
    batch = tmp_path / "batch"
    for student in ("alice", "bob"):
        (batch / student).mkdir(parents=True)
    (batch / "alice" / "x.ipynb").write_bytes(b"")
    gradebook = tmp_path / "grades.sqlite"
    grade(batch, gradebook).communicate(timeout=120)
    (batch / "bob" / "x.ipynb").write_bytes(b"")
    out = tmp_path / "out.json"
    done = grade(batch, gradebook, "--json", str(out))
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    messages = [s["error"]["message"] for s in
                json.loads(out.read_text(encoding="utf-8"))["submissions"]]
    assert messages == [
        f"{batch}/alice/x.ipynb: the file is empty; " + RESUBMIT,
        f"{batch}/bob/x.ipynb: the file is empty; " + RESUBMIT]


def test_a_zip_graded_twice_keeps_one_row_per_member(tmp_path: Path) -> None:
    # Its members are read from a new temporary folder each run; they are
    # named, shown and stored after the zip, so the second run finds them.
    archive = tmp_path / "week2.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for student in ("cleo", "dan"):
            bundle.write(SAMPLES / "wrong_axis.ipynb", f"{student}/x.ipynb")
    gradebook = tmp_path / "grades.sqlite"
    said = [said_by(grade(archive, gradebook)) for _run in range(2)]
    assert f"12/20 {archive}/cleo/x.ipynb" in said[0]
    assert "grader-unpacked" not in said[0] + said[1]
    assert "(2 already in" in said[1] and "identical to files" not in said[1]
    with sqlite3.connect(gradebook) as db:
        stored = db.execute("SELECT path, student FROM results ORDER BY path"
                            ).fetchall()
    assert stored == [(f"{archive}/cleo/x.ipynb", "cleo"),
                      (f"{archive}/dan/x.ipynb", "dan")]


def test_a_result_that_cannot_be_stored_does_not_stop_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from grader import gradebook
    from grader.cli import main

    stored = gradebook.Gradebook.record

    def failing_for_one(self, digest, result, student):  # type: ignore[no-untyped-def]
        if result["path"].endswith("wrong_axis.ipynb"):
            raise sqlite3.OperationalError("disk I/O error")
        stored(self, digest, result, student)

    monkeypatch.setattr(gradebook.Gradebook, "record", failing_for_one)
    out = tmp_path / "out.json"
    done = CliRunner().invoke(main, [
        "grade", str(SAMPLES / "wrong_axis.ipynb"),
        str(SAMPLES / "correct_vectorised.ipynb"),
        "-j", "1", "--gradebook", str(tmp_path / "gb.sqlite"), "--json", str(out)])
    assert done.exit_code == 0, done.output
    assert "2 submissions: 2 graded" in done.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [Path(s["path"]).name for s in report["submissions"]] == [
        "wrong_axis.ipynb", "correct_vectorised.ipynb"]


def test_ctrl_c_stops_the_batch_and_keeps_what_is_graded(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    total = make_batch(batch, copies=10)
    gradebook = tmp_path / "grades.sqlite"
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "grader", "grade", str(batch), "-j", "2", "-q",
         "--gradebook", str(gradebook)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while rows(gradebook) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = Path(f"/proc/{coordinator.pid}/task/{coordinator.pid}/children")
    workers = [int(pid) for pid in children.read_text().split()]
    coordinator.send_signal(signal.SIGINT)
    _, stderr = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 1
    assert stderr.splitlines()[-1] == "Aborted!"
    # Stopped, not finished first: the queued submissions were dropped.
    kept = rows(gradebook)
    assert 3 <= kept < total
    assert [pid for pid in workers if _alive(pid)] == []
    # The next run grades only what is missing.
    again = grade(batch, gradebook)
    stdout, _ = again.communicate(timeout=300)
    assert f"({kept} already in {gradebook};" in " ".join(stdout.split())
    assert rows(gradebook) == total


def test_an_interrupted_pool_drops_its_queue_and_ends_its_workers() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from grader.pipeline import _stopped_at_once_on_interrupt

    with ProcessPoolExecutor(max_workers=2) as pool:
        # Long enough that a busy machine's delays change nothing.
        futures = [pool.submit(time.sleep, 1.0) for _ in range(100)]
        workers = list(pool._processes.values())
        with pytest.raises(KeyboardInterrupt):
            with _stopped_at_once_on_interrupt(pool):
                futures[0].result()
                raise KeyboardInterrupt
    # Ended, not left to sleep through the other 99 tasks: at most the
    # few already handed to a worker ran.
    ran = [future for future in futures
           if future.done() and not future.cancelled()
           and future.exception() is None]
    assert len(ran) <= 5
    # Killed: gone, or waiting to be reaped by the executor's own thread
    # (which may take the exit status before this test could).
    deadline = time.monotonic() + 30
    while any(_alive(worker.pid) for worker in workers) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2
    assert [worker.pid for worker in workers if _alive(worker.pid)] == []
