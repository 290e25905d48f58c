"""Grading on a Dask LocalCluster: same verdicts, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from grader.assignment import Assignment
from grader.options import GradingOptions
from grader.pipeline import SubmissionResult
from tests.conftest import SAMPLES
from tests.test_end_to_end import check_against_manifest, run_grader

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.cluster


def test_a_local_cluster_reproduces_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    done = run_grader("grade", str(SAMPLES), "--cluster", "local:2", "-q",
                      "--json", str(out), "--gradebook", str(tmp_path / "gb"))
    assert done.returncode == 0, done.stderr
    check_against_manifest(json.loads(out.read_text(encoding="utf-8")))
    assert "distributed.scheduler" not in done.stdout + done.stderr


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(
    tmp_path: Path, assignment: Assignment
) -> None:
    from grader.cluster import grade_on_cluster

    batch = []
    for copy in range(4):
        for sample in sorted(SAMPLES.glob("*.ipynb")):
            if sample.name == "truncated.ipynb":
                continue
            target = tmp_path / f"{copy}_{sample.name}"
            shutil.copy(sample, target)
            batch.append(target)

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    pids = list(client.run(os.getpid).values())
    seen: list[SubmissionResult] = []
    killed = threading.Event()

    def arrived(result: SubmissionResult) -> None:
        seen.append(result)
        if len(seen) == 5 and not killed.is_set():
            killed.set()
            os.kill(pids[0], signal.SIGKILL)

    try:
        results = grade_on_cluster(cluster.scheduler_address, batch, assignment,
                                   GradingOptions(), arrived)
    finally:
        client.close()
        cluster.close()

    assert killed.is_set()
    assert len(seen) == len(batch)
    assert sorted(r.path for r in seen) == sorted(batch)
    manifest = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))
    for result in results:
        expected = manifest[result.path.name.split("_", 1)[1]]
        assert result.status == "graded", result.error_message
        for name, verdict in expected["functions"].items():
            ids = [d.id for d in result.functions[name].diagnoses]
            assert ids == verdict["diagnoses"], (result.path.name, name)


def test_without_the_flag_nothing_of_dask_is_imported(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from grader.cli import main\n"
        "try:\n"
        f"    main(['grade', {str(SAMPLES / 'wrong_axis.ipynb')!r}, '-q',"
        f" '--gradebook', {str(tmp_path / 'gb')!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('DASK' if {'dask', 'distributed'} & set(sys.modules) else 'NO DASK')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip().endswith("NO DASK"), done.stdout + done.stderr
