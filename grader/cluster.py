"""Grading on a Dask cluster (`--cluster tcp://host:8786` or `local:N`).

Imported only when --cluster is given. Each worker grades with the same
engine and sandbox as a local run. The assignment travels once per worker
(scattered to all of them, rebuilt in a temporary folder, its grader kept
for the worker's life); submissions travel as bytes, so workers need no
shared file system; results come back as plain data and are written to the
gradebook here as they arrive. Dask reruns the submissions of a lost worker
elsewhere; one that keeps killing workers is marked failed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grader.assignment import Assignment, load_assignment
from grader.errors import SubmissionError, UsageError
from grader.options import GradingOptions
from grader.pipeline import Grader, SubmissionResult
from grader.reading import display_path, read_submission_bytes

log = logging.getLogger(__name__)

#: Graders built on this worker, by assignment digest and options.
_WORKER_GRADERS: dict[tuple[str, GradingOptions], Grader] = {}
#: Where those graders' assignments were unpacked.
_WORKER_FOLDERS: list[Path] = []


def assignment_bundle(assignment: Assignment) -> dict[str, Any]:
    files = {
        path.relative_to(assignment.root).as_posix(): path.read_bytes()
        for path in sorted(assignment.root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    return {"digest": assignment.digest, "name": assignment.root.name, "files": files}


def _worker_grader(bundle: dict[str, Any], options: GradingOptions) -> Grader:
    key = (bundle["digest"], options)
    if key not in _WORKER_GRADERS:
        folder = Path(tempfile.mkdtemp(prefix="grader-assignment-")) / bundle["name"]
        for relative, data in bundle["files"].items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _WORKER_GRADERS[key] = Grader(load_assignment(folder), options)
        _WORKER_FOLDERS.append(folder.parent)
    return _WORKER_GRADERS[key]


def close_worker_graders() -> None:
    """Runs on a worker as it closes (see `_forget_graders_plugin`): its
    graders' sandboxes and the copies of the assignment go with it."""
    for grader in _WORKER_GRADERS.values():
        grader.close()
    _WORKER_GRADERS.clear()
    for folder in _WORKER_FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)
    _WORKER_FOLDERS.clear()


def _forget_graders_plugin() -> Any:
    """A Dask worker plugin whose teardown calls `close_worker_graders`.

    Built here, not at import, so that Dask is imported only with --cluster.
    """
    from distributed import WorkerPlugin

    class ForgetGraders(WorkerPlugin):
        def teardown(self, worker: Any) -> None:
            from grader.cluster import close_worker_graders

            close_worker_graders()

    return ForgetGraders()


def grade_remote(bundle: dict[str, Any], options: GradingOptions, name: str,
                 data: bytes) -> dict[str, Any]:
    """Runs on a worker: grade one submission given as bytes."""
    grader = _worker_grader(bundle, options)
    with tempfile.TemporaryDirectory(prefix="grader-remote-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        result = grader.grade(path).to_dict()
    return result


def _local_workers(address: str) -> int:
    """N of local:N (local: alone is one worker)."""
    count = address.split(":", 1)[1] or "1"
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"--cluster {address}: local:N needs a number of "
                         "workers, such as local:4")
    return int(count)


def grade_on_cluster(
    address: str,
    paths: list[Path],
    assignment: Assignment,
    options: GradingOptions,
    on_result: Callable[[SubmissionResult], None],
) -> list[SubmissionResult]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UsageError(
            "--cluster needs Dask: pip install 'grader[cluster]'") from None

    if not log.isEnabledFor(logging.INFO):
        # Dask logs every scheduler event at INFO; keep the terminal for results.
        for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                     "distributed.core", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)
    cluster = None
    if address.startswith("local:"):
        workers = _local_workers(address)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout=30)
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"--cluster {address}: no Dask scheduler answered "
                             f"there ({exc}); give its address as "
                             "tcp://host:8786, or local:N") from None
    max_score = sum(f.max_score for f in assignment.functions)
    results: dict[Path, SubmissionResult] = {}
    try:
        client.register_plugin(_forget_graders_plugin(), name="grader-forget-graders")
        [bundle] = client.scatter([assignment_bundle(assignment)], broadcast=True)
        futures = {}
        for index, path in enumerate(paths):
            try:
                data = read_submission_bytes(path)
            except SubmissionError as exc:
                result = SubmissionResult(path, "error", 0.0, max_score,
                                          error_kind=exc.kind,
                                          error_message=exc.message)
                results[path] = result
                on_result(result)
                continue
            future = client.submit(grade_remote, bundle, options, path.name, data,
                                   key=f"grade-{index}-{path.name}", pure=False)
            futures[future] = path
        for future in as_completed(futures):
            path = futures[future]
            try:
                raw = future.result()
                result = SubmissionResult.from_dict(raw, path)
                result = _with_local_path(result, path)
            except Exception as exc:  # KilledWorker and friends
                result = SubmissionResult(
                    path, "error", 0.0, max_score, error_kind="grader_crashed",
                    error_message=f"{display_path(path)}: grading on the cluster "
                    f"failed ({type(exc).__name__}); it may kill its workers")
            results[path] = result
            on_result(result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [results[path] for path in paths]


def _with_local_path(result: SubmissionResult, path: Path) -> SubmissionResult:
    """Messages name the worker's temporary copy; name the real file."""
    import dataclasses
    import re

    if result.error_message:
        message = re.sub(r"^\S*grader-remote-[^/]+/[^:]*", display_path(path),
                         result.error_message)
        result = dataclasses.replace(result, error_message=message)
    return result
