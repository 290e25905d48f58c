"""The grading pipeline: one submission through every stage, and batches.

    read -> locate -> execute (run + probe) -> compare/diagnose -> score

`grade_submission` lists the stages in order; `Grader` holds what a batch
computes once (the assignment, the diagnosis table, the kernel-side code).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import site
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader import __version__, mistake_outputs
from grader.assignment import Assignment
from grader.diagnosing import (
    DiagnosisTable,
    diagnose,
    failed_import_names,
    failed_snippets,
)
from grader.errors import SubmissionError
from grader.executing import (
    Execution,
    ForkEngine,
    KernelPackage,
    execute_in_kernel,
    merge_executions,
    without_reasons,
)
from grader.locating import LocatedCode, locate
from grader.options import GradingOptions
from grader.probing import probe_request
from grader.reading import Notebook, display_path, printable, read_notebook
from grader.scoring import FunctionScore, score_function

log = logging.getLogger(__name__)

#: Times a batch restarts its worker pool after a worker died.
POOL_ROUNDS = 3


@dataclass(frozen=True)
class SubmissionResult:
    path: Path
    status: str  # "graded" or "error"
    score: float
    max_score: float
    functions: dict[str, FunctionScore] = field(default_factory=dict)
    error_kind: str | None = None
    error_message: str | None = None
    digest: str | None = None
    #: Which Keras/TensorFlow the kernel used, as the kernel reported it.
    backend: dict[str, Any] = field(default_factory=dict)
    #: Which isolation was active (engine, network protection).
    protections: dict[str, Any] = field(default_factory=dict)
    #: Wall-clock seconds spent grading this submission.
    seconds: float | None = None
    #: Who submitted it, from the batch's layout (see grader.collecting).
    student: str | None = None

    def to_dict(self) -> dict[str, Any]:
        error = None
        if self.status == "error":
            error = {"kind": self.error_kind, "message": self.error_message}
        return {
            "path": display_path(self.path),
            "student": self.student,
            "status": self.status,
            "error": error,
            "score": self.score,
            "max_score": self.max_score,
            "functions": {name: f.to_dict() for name, f in self.functions.items()},
            "protections": self.protections,
            "seconds": self.seconds,
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path) -> SubmissionResult:
        """Rebuild a result stored in the gradebook, for the file at `path`."""
        error = raw.get("error") or {}
        return cls(
            path=path,
            status=raw["status"],
            score=float(raw["score"]),
            max_score=float(raw["max_score"]),
            functions={name: FunctionScore.from_dict(name, f)
                       for name, f in raw.get("functions", {}).items()},
            error_kind=error.get("kind"),
            error_message=error.get("message"),
            seconds=raw.get("seconds"),
            protections=raw.get("protections") or {},
            digest=raw.get("digest"),
        )


class Grader:
    """Grades submissions of one assignment; build once per batch."""

    def __init__(self, assignment: Assignment, options: GradingOptions) -> None:
        self.assignment = assignment
        self.options = dataclasses.replace(
            options, hidden_paths=hidden_from_sandbox(assignment, options.hidden_paths))
        self.table = DiagnosisTable(assignment, public_only=options.public_only,
                                    public_evidence=options.public_evidence)
        self.package = KernelPackage()
        self.fork_engine = ForkEngine(self.package, self.options)

    def close(self) -> None:
        self.fork_engine.close()
        self.package.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def max_score(self) -> float:
        return sum(f.max_score for f in self.assignment.functions)

    def grade(self, path: Path) -> SubmissionResult:
        started = time.monotonic()
        result = self._grade_contained(path)
        return dataclasses.replace(result, seconds=round(time.monotonic() - started, 4))

    def _grade_contained(self, path: Path) -> SubmissionResult:
        try:
            return self._grade(path)
        except SubmissionError as exc:
            # The file's name as shown everywhere else: a name can carry a
            # terminal's escape sequences.
            message = printable(exc.message.replace(str(path), display_path(path)))
            log.info("%s", message)
            return SubmissionResult(path, "error", 0.0, self.max_score,
                                    error_kind=exc.kind, error_message=message)
        except Exception as exc:  # contain it (RecursionError too): the batch goes on
            log.exception("%s: grading failed inside the grader", display_path(path))
            return SubmissionResult(
                path, "error", 0.0, self.max_score, error_kind="grader_crashed",
                error_message=f"{display_path(path)}: grading failed inside the "
                f"grader ({type(exc).__name__}); grade it again alone and report "
                "the file if it fails again",
            )

    def _grade(self, path: Path) -> SubmissionResult:
        return self.grade_notebook(read_notebook(path))

    def grade_notebook(self, notebook: Notebook) -> SubmissionResult:
        """Grade a notebook already read: locate, execute, diagnose, score."""
        names = [f.name for f in self.assignment.functions]
        located = locate(notebook, names)
        present = [name for name in names if name in located.definitions]
        if self.options.public_evidence:
            # What is quoted (public cases) comes from a process that never
            # held a hidden input: the hidden cases run apart, afterwards.
            public = self._execute(located, present, public=True)
            hidden = self._execute(located, present, public=False)
            execution = merge_executions(public, without_reasons(hidden))
        else:
            execution = self._execute(located, present)
        failed_imports = failed_import_names(execution.statuses, located)
        failed_definitions = failed_snippets(execution.statuses)

        functions = {}
        for graded in self.assignment.functions:
            diagnoses = diagnose(self.table, graded.name,
                                 execution.runs.get(graded.name), located,
                                 failed_imports, failed_definitions)
            functions[graded.name] = score_function(graded, diagnoses)
        return SubmissionResult(
            path=notebook.path,
            status="graded",
            score=round(sum(f.score for f in functions.values()), 2),
            max_score=self.max_score,
            functions=functions,
            digest=notebook.digest,
            backend=execution.backend,
            protections=execution.protections,
        )

    def _execute(self, located: LocatedCode, names: list[str],
                 public: bool | None = None) -> Execution:
        """Run the submission and probe `names` on their cases: all of them,
        or only the public (True) or the hidden (False) ones."""
        requests = []
        for name in names:
            cases = [case for case in self.table.cases[name]
                     if public is None or case.public == public]
            if cases:
                requests.append(probe_request(name, cases, self.options.case_timeout))
        if self.options.mode == "full" or self.options.engine == "kernel":
            return execute_in_kernel(located, requests, self.options, self.package)
        return self.fork_engine.execute(located, requests)

    def grade_many(
        self,
        paths: list[Path],
        jobs: int = 1,
        on_result: Callable[[SubmissionResult], None] | None = None,
    ) -> list[SubmissionResult]:
        """Grade in `jobs` processes; results come back in the input order."""
        results: dict[int, SubmissionResult] = {}
        for index, result in self._stream(paths, jobs):
            results[index] = result
            if on_result is not None:
                on_result(result)
        return [results[i] for i in range(len(paths))]

    def _stream(
        self, paths: list[Path], jobs: int
    ) -> Iterator[tuple[int, SubmissionResult]]:
        if jobs <= 1 or len(paths) <= 1:
            for index, path in enumerate(paths):
                yield index, self.grade(path)
            return
        global _WORKER_GRADER
        _WORKER_GRADER = self  # inherited by the forked workers, not pickled
        remaining = dict(enumerate(paths))
        for _round in range(POOL_ROUNDS):
            try:
                yield from self._pool_round(remaining, jobs)
                return
            except BrokenProcessPool:
                log.warning("a grading worker died; %d submissions go round again",
                            len(remaining))
        for index, path in list(remaining.items()):
            yield index, self._crashed(path, "its grading worker died repeatedly")

    def _pool_round(
        self, remaining: dict[int, Path], jobs: int
    ) -> Iterator[tuple[int, SubmissionResult]]:
        """Grade what remains; finished ones leave `remaining` as they arrive."""
        with ProcessPoolExecutor(max_workers=jobs, initializer=_end_with,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_grade_in_worker, path): index
                       for index, path in remaining.items()}
            with _stopped_at_once_on_interrupt(pool):
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise
                    except Exception as exc:  # contained: that submission fails
                        result = self._crashed(remaining[index],
                                               type(exc).__name__)
                    del remaining[index]
                    yield index, result

    def _crashed(self, path: Path, reason: str) -> SubmissionResult:
        return SubmissionResult(
            path, "error", 0.0, self.max_score, error_kind="grader_crashed",
            error_message=f"{display_path(path)}: grading crashed ({reason}); "
            "grade it again alone",
        )


def hidden_from_sandbox(
    assignment: Assignment, extra: tuple[str, ...]
) -> tuple[str, ...]:
    """Folders the sandbox must not see: the reference, the grader, `extra`.

    A folder that holds the Python installation itself is never hidden:
    student code must still import numpy.
    """
    package = Path(__file__).resolve().parent
    # The folder holding the package: a checkout run from its source, with
    # its history, wherever it lies (under /usr its root is not covered).
    # Installed, that folder is site-packages, which the rule below keeps.
    # Its history separately: a virtual environment inside the checkout
    # keeps the checkout itself in view.
    wanted = [assignment.root.resolve(), package, package.parent,
              package.parent / ".git"]
    wanted += [Path(p).resolve() for p in extra]
    # Other installed copies of the grader (an editable install also leaves
    # one in site-packages) carry the shipped reference too.
    wanted += [Path(site_dir) / package.name for site_dir in site.getsitepackages()]
    if assignment.root.resolve().parent.name in ("reference", "_reference"):
        wanted.append(assignment.root.resolve().parent)
    kept_outputs = mistake_outputs.cache_folder()
    if kept_outputs is not None:
        # Created now, so that it is there to be hidden.
        try:
            kept_outputs.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # then nothing is kept there either
        wanted.append(kept_outputs.resolve())
    installed = (sys.prefix, sys.base_prefix, *site.getsitepackages(),
                 tempfile.gettempdir())
    needed = [Path(p).resolve() for p in installed]
    kept = []
    for folder in dict.fromkeys(wanted):
        if not folder.is_dir():
            continue
        if any(folder == n or folder in n.parents for n in needed):
            log.debug("not hiding %s as a whole: Python itself lives there (what "
                      "must stay unseen in it is hidden on its own)", folder)
            continue
        kept.append(str(folder))
    return tuple(kept)


_WORKER_GRADER: Grader | None = None


@contextlib.contextmanager
def _stopped_at_once_on_interrupt(pool: ProcessPoolExecutor) -> Iterator[None]:
    """Interrupted (Ctrl-C, here or while a result is being kept, which
    closes this generator), the queued submissions are dropped and the
    workers ended, rather than the whole batch graded first: what is
    graded is stored already, and the next run resumes."""
    try:
        yield
    except BaseException:
        # The executor has no public way to end a running task; its
        # processes are gone from it once it is shut down.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.kill()
        raise


def _end_with(coordinator: int) -> None:
    """In each worker: end when the coordinating process ends, however it
    ends. Killed (SIGKILL), it closes nothing, and its workers would wait
    for work forever, each with a sandbox, holding the gradebook open.
    Ctrl-C reaches the coordinator, which stops the batch: a worker that
    took it for its own would fail one submission and go on to the next."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        import ctypes

        set_parent_death_signal = 1  # prctl's PR_SET_PDEATHSIG
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(set_parent_death_signal, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != coordinator:  # it ended before the signal was set
        os._exit(1)


def _grade_in_worker(path: Path) -> SubmissionResult:
    assert _WORKER_GRADER is not None  # set before the pool forks
    return _WORKER_GRADER.grade(path)


def batch_report(
    assignment: Assignment, results: list[SubmissionResult]
) -> dict[str, Any]:
    return {
        "grader_version": __version__,
        "assignment": {"name": assignment.name, "version": assignment.version,
                       "digest": assignment.digest},
        "submissions": [result.to_dict() for result in results],
    }
