"""Stage 3: run the needed student code in isolation and probe it.

Two engines share the kernel-side code (`grader.inkernel`):

* the fork engine (default for the sliced mode): a warmed process per
  grading worker, started without the assignment's reference, forks one
  isolated child per submission (see `grader.inkernel.zygote`);
* the kernel engine (the full mode, and the fidelity reference): a Jupyter
  kernel per submission through nbclient, answering with display messages
  tagged with a token chosen here for this run.

Either way only plain JSON comes back; nothing the student prints counts.
"""

from __future__ import annotations

import hmac
import json
import logging
import multiprocessing.util
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets import List, Unicode

from grader.inkernel import limits
from grader.inkernel.zygote import CLEANUP_FAILED
from grader.locating import LocatedCode, Snippet
from grader.options import GradingOptions
from grader.probing import FunctionRun, read_probe_report

log = logging.getLogger(__name__)

MIME = "application/vnd.grader.report+json"
#: Name under which the kernel-side package is importable in the kernel.
KERNEL_PACKAGE = "grader_inkernel"
#: Environment variables a kernel inherits; everything else is dropped.
KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
KEPT_PREFIXES = ("OPENBLAS_", "MKL_", "OMP_")
#: Address space a kernel needs for itself (Python, numpy, ZeroMQ threads).
KERNEL_BASE_MEMORY = 3 * 2**30
#: What a kernel keeps resident besides the submission, with the stand-in,
#: and with a real TensorFlow.
KERNEL_RESIDENT_MEMORY = 512 * 2**20
KERNEL_TENSORFLOW_MEMORY = 3 * 2**30
#: Bytes of the launcher's confinement report read; it is a short list.
CONFINEMENT_REPORT_CAP = 4096


@dataclass(frozen=True)
class SnippetStatus:
    cell: int
    line: int | None
    ok: bool
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Execution:
    """What running and probing one submission produced."""

    runs: dict[str, FunctionRun]
    statuses: tuple[SnippetStatus, ...] = ()
    backend: dict[str, Any] = field(default_factory=dict)
    #: Set when the kernel could not be used at all (did not start, died
    #: before probing); every function then fails with this reason.
    failure: str | None = None
    #: Which protections were active ("namespace", "sockets_blocked", ...).
    protections: dict[str, Any] = field(default_factory=dict)


def merge_executions(first: Execution, second: Execution) -> Execution:
    """One submission run twice on different cases, as if run once: each
    function's outcomes together, and a function that did not run in
    either run failed as it failed there first."""
    runs = dict(second.runs)
    for name, run in first.runs.items():
        other = runs.get(name)
        if other is None or run.status != "ran":
            runs[name] = run
        elif other.status == "ran":
            runs[name] = FunctionRun(name, "ran", run.outcomes + other.outcomes,
                                     output=run.output + other.output)
    return Execution(runs, first.statuses, first.backend,
                     first.failure or second.failure, first.protections)


def without_reasons(execution: Execution) -> Execution:
    """`execution` with each failure told in the same words: an exit status
    or a crash's detail, chosen by the submission, can carry data out."""
    runs = {
        name: run if run.status == "ran" else FunctionRun(
            name, run.status,
            reason="it stopped on a hidden case (details of hidden cases are "
            "not shown)")
        for name, run in execution.runs.items()
    }
    return Execution(runs, execution.statuses, execution.backend,
                     execution.failure, execution.protections)


class KernelPackage:
    """A private copy of `grader.inkernel` for kernels to import.

    Kernels get this folder on their path and nothing else of the grader,
    so the assignment's reference is not importable from student code.
    """

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="grader-kernel-code-"))
        source = Path(__file__).resolve().parent / "inkernel"
        shutil.copytree(
            source, self._folder / KERNEL_PACKAGE,
            ignore=shutil.ignore_patterns("__pycache__"),
        )

    @property
    def path(self) -> str:
        return str(self._folder)

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def execute_in_kernel(
    located: LocatedCode,
    requests: list[dict[str, Any]],
    options: GradingOptions,
    package: KernelPackage,
) -> Execution:
    """Run the submission's code in a fresh kernel, then each probe request."""
    token = secrets.token_hex(16)
    cells = [_setup_cell(token, options, package)]
    if options.mode == "full":
        cells += [_snippets_cell(token, c.statements()) for c in located.cells]
    else:
        cells.append(_snippets_cell(token, list(located.snippets)))
    first_probe = len(cells)
    for request in requests:
        cell = _probe_cell(token, request)
        cell.metadata["grader_timeout"] = (
            options.case_timeout * max(len(request["cases"]), 1) + 10)
        cells.append(cell)

    notebook = nbformat.v4.new_notebook(cells=cells)
    with tempfile.TemporaryDirectory(prefix="grader-submission-") as folder:
        # The kernel sees `work` only (its connection file, its sockets);
        # the launcher's report beside it is out of its reach.
        workdir = os.path.join(os.path.realpath(folder), "work")
        os.mkdir(workdir, 0o700)
        report = os.path.join(os.path.realpath(folder), "confinement.json")
        launcher = _launcher_command(options, workdir, report)
        failure = _run_cells(notebook, first_probe, options, workdir, launcher,
                             package)
        protections = {"engine": "kernel", "confinement": _confinement(report)}
    # The launcher dies with its kernel's shutdown, often before it could
    # remove its control groups.
    limits.tidy()
    return _read_reports(notebook, token, requests, first_probe, failure,
                         protections)


def _setup_cell(token: str, options: GradingOptions, package: KernelPackage) -> Any:
    payload = json.dumps({"token": token, "backend": options.backend})
    source = (
        f"import sys; sys.path.insert(0, {package.path!r})\n"
        f"from {KERNEL_PACKAGE} import runtime as __grader_runtime__\n"
        f"__grader_runtime__.setup({payload!r})"
    )
    return nbformat.v4.new_code_cell(source)


def _snippets_cell(token: str, snippets: list[Snippet]) -> Any:
    payload = json.dumps({
        "token": token,
        "snippets": [{"cell": s.cell, "line": s.line, "source": s.source}
                     for s in snippets],
    })
    return nbformat.v4.new_code_cell(f"__grader_runtime__.run_snippets({payload!r})")


def _probe_cell(token: str, request: dict[str, Any]) -> Any:
    payload = json.dumps({"token": token, **request})
    return nbformat.v4.new_code_cell(f"__grader_runtime__.probe({payload!r})")


class ConfinedKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel through `launcher`."""

    launcher = List(Unicode())

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None
                          ) -> list[str]:
        return [*self.launcher, *super().format_kernel_cmd(extra_arguments)]


def _run_cells(
    notebook: Any, first_probe: int, options: GradingOptions, workdir: str,
    launcher: list[str], package: KernelPackage,
) -> str | None:
    # Unix sockets instead of TCP: they keep working inside the kernel's
    # empty network namespace. The connection file, with the key that signs
    # messages, stays in the working folder, which no other kernel sees.
    manager = ConfinedKernelManager(
        kernel_name="python3", transport="ipc", ip=os.path.join(workdir, "kernel"),
        connection_file=os.path.join(workdir, "connection.json"),
        launcher=launcher)
    environment = kernel_environment(workdir)
    environment["PYTHONPATH"] = package.path  # for the launcher only
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=int(options.cell_timeout),
        allow_errors=True,
        interrupt_on_timeout=True,
        record_timing=False,
        # Every answer is in once the last cell ran: nothing to wait for.
        shutdown_kernel="immediate",
    )
    try:
        # nbclient leaves alone a kernel whose manager it was given unless
        # told to clean up: the kernel would outlive its submission.
        with client.setup_kernel(
            cleanup_kc=True,
            cwd=workdir,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ):
            for index, cell in enumerate(notebook.cells):
                if index == 1 and options.mode != "full":
                    client.timeout = int(options.setup_timeout)
                elif index >= first_probe:
                    client.timeout = int(cell.metadata["grader_timeout"])
                else:
                    client.timeout = int(options.cell_timeout)
                # nbclient interrupts a cell past its time and waits again; a
                # kernel that ignores interrupts is killed by this watchdog.
                watchdog = threading.Timer(2 * client.timeout + 10, _kill_kernel,
                                           (manager, cell))
                watchdog.start()
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    log.info("cell %d ran past %ss and was interrupted",
                             index, client.timeout)
                    cell.metadata["grader_timed_out"] = True
                finally:
                    watchdog.cancel()
    except DeadKernelError:
        return "the kernel died while running the submission (it may have "\
            "exited, crashed, run out of memory or run past its time)"
    except RuntimeError as exc:
        return f"the kernel could not be started: {exc}"
    return None


def _kill_kernel(manager: Any, cell: Any) -> None:
    cell.metadata["grader_timed_out"] = True
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    if process is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()


def _launcher_command(options: GradingOptions, workdir: str, report: str
                      ) -> list[str]:
    """What starts the kernel in its sandbox (`inkernel.kernel_launcher`)."""
    memory = options.memory_limit_mb * 2**20 + KERNEL_BASE_MEMORY
    if options.backend == "tensorflow":
        memory = 0  # TensorFlow maps many gigabytes it never uses
    config = json.dumps({"workdir": workdir, "report": report,
                         "hidden": list(options.hidden_paths),
                         "memory_bytes": memory,
                         "group_memory_bytes": memory_for_all(
                             options, KERNEL_RESIDENT_MEMORY)})
    return [sys.executable, "-m", f"{KERNEL_PACKAGE}.kernel_launcher", config, "--"]


def memory_for_all(options: GradingOptions, resident: int) -> int:
    """What a submission's processes may hold in memory together (resident,
    not mapped, for a control group): its limit, plus `resident` for the
    engine's own process, or what a real TensorFlow keeps."""
    extra = KERNEL_TENSORFLOW_MEMORY if options.backend == "tensorflow" else resident
    return options.memory_limit_mb * 2**20 + extra


def _confinement(report: str) -> list[str]:
    """The protections the launcher says it put in place; none if it said
    nothing readable (it could not start, or confine nothing)."""
    try:
        with open(report, encoding="utf-8") as said:
            body = json.loads(said.read(CONFINEMENT_REPORT_CAP))
    except (OSError, ValueError):
        return []
    return _protection_names(body)


def _protection_names(said: Any) -> list[str]:
    """A sandbox's list of protections, read defensively."""
    if not isinstance(said, list):
        return []
    return [str(item)[:40] for item in said[:20]]


def kernel_environment(workdir: str) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key in KEPT_VARIABLES or key.startswith(KEPT_PREFIXES)
    }
    environment.update(
        HOME=workdir,
        TMPDIR=workdir,
        IPYTHONDIR=os.path.join(workdir, ".ipython"),
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return environment


def _read_reports(
    notebook: Any,
    token: str,
    requests: list[dict[str, Any]],
    first_probe: int,
    failure: str | None,
    protections: dict[str, Any],
) -> Execution:
    backend: dict[str, Any] = {}
    statuses: list[SnippetStatus] = []
    for cell in notebook.cells[:first_probe]:
        for kind, body in _reports(cell, token):
            if kind == "setup" and isinstance(body, dict):
                backend = body
            elif kind == "snippets" and isinstance(body, dict):
                statuses.extend(_statuses(body.get("statuses")))

    runs: dict[str, FunctionRun] = {}
    for offset, request in enumerate(requests):
        name = request["function"]
        index = first_probe + offset
        cell = notebook.cells[index] if index < len(notebook.cells) else None
        reports = [body for kind, body in _reports(cell, token) if kind == "probe"]
        if reports:
            runs[name] = read_probe_report(name, reports[-1])
        elif cell is not None and cell.metadata.get("grader_timed_out"):
            runs[name] = FunctionRun(name, "timeout", reason="ran past the time limit")
        else:
            reason = failure or "the kernel gave no answer for this function"
            runs[name] = FunctionRun(name, "crashed", reason=reason)
    return Execution(runs, tuple(statuses), backend, failure, protections)


def _reports(cell: Any, token: str) -> list[tuple[str, Any]]:
    if cell is None:
        return []
    found = []
    for output in cell.get("outputs", []):
        message = output.get("data", {}).get(MIME)
        if isinstance(message, dict) and message.get("token") == token:
            found.append((str(message.get("kind")), message.get("body")))
    return found


def _statuses(raw: Any) -> list[SnippetStatus]:
    if not isinstance(raw, list):
        return []
    statuses = []
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        error = entry.get("error") if isinstance(entry.get("error"), dict) else {}
        statuses.append(SnippetStatus(
            cell=int(entry.get("cell", 0)),
            line=entry.get("line") if isinstance(entry.get("line"), int) else None,
            ok=bool(entry.get("ok")),
            error_type=str(error.get("type"))[:100] if error else None,
            error_message=str(error.get("message"))[:300] if error else None,
        ))
    return statuses


class ForkEngine:
    """Drives one warmed zygote process; restarts it if it dies.

    Owned by one process: a grading worker forked from the batch's parent
    starts its own zygote rather than sharing the parent's pipes.
    """

    def __init__(self, package: KernelPackage, options: GradingOptions) -> None:
        self.package = package
        self.options = options
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._workdir = ""

    def close(self) -> None:
        if self._process is not None and self._owner == os.getpid():
            # Told by the end of its input, the sandbox ends itself and
            # removes its control groups; killed, it could not.
            try:
                if self._process.stdin is not None:
                    self._process.stdin.close()
                self._process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                # Still serving a submission: told to stop, it ends the
                # namespace (every process in it) and removes its groups.
                self._process.terminate()
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._process = None

    def execute(
        self, located: LocatedCode, requests: list[dict[str, Any]]
    ) -> Execution:
        cases = sum(len(r["cases"]) for r in requests)
        timeout = self.options.case_timeout * cases + self.options.setup_timeout / 3
        plan = {
            "id": secrets.token_hex(8),
            # The sandbox learns only what is probed; the submission's code
            # and the cases' inputs travel past it to the child.
            "probe_plan": [{"function": r["function"], "cases": len(r["cases"]),
                            "case_timeout": r["case_timeout"]} for r in requests],
            "timeout": timeout,
        }
        code = {
            # Signs each report the child's runtime writes (see
            # _reports_of_runs); the child never writes it out.
            "key": secrets.token_hex(32),
            "snippets": [{"cell": s.cell, "line": s.line, "source": s.source}
                         for s in located.snippets],
            "limits": {
                "memory_bytes": self.options.memory_limit_mb * 1024 * 1024,
                "cpu_seconds": int(timeout) + 1,
                "file_bytes": 64 * 1024 * 1024,
            },
        }
        answer = self._ask(plan, code, requests, timeout + 15)
        if answer is None:
            reason = "the grading sandbox stopped answering; the submission was stopped"
            return Execution(
                {r["function"]: FunctionRun(r["function"], "crashed", reason=reason)
                 for r in requests},
                failure=reason,
            )
        return _execution_from_answer(answer, requests, code["key"])

    def _ask(self, plan: dict[str, Any], code: dict[str, Any],
             probes: list[dict[str, Any]], timeout: float) -> dict[str, Any] | None:
        """Send one request; the answer's header, each run's reports under
        "data"; None (and the sandbox closed) when it does not answer."""
        parts = [json.dumps(part).encode() for part in (plan, code, probes)]
        request = b"%d %d %d\n" % tuple(len(p) for p in parts) + b"".join(parts)
        for _attempt in range(2):
            process = self._zygote()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(request)
                process.stdin.flush()
            except BrokenPipeError:
                # Ended after its last answer (see CLEANUP_FAILED): the
                # request goes to a fresh sandbox.
                self.close()
                continue
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else b""
            if line:
                break
            if ready and _ended_with(process, CLEANUP_FAILED):
                self.close()
                continue
            log.warning("the grading sandbox did not answer; restarting it")
            self.close()
            return None
        else:
            log.warning("the grading sandbox failed twice before this submission")
            return None
        answer: dict[str, Any] = json.loads(line)
        if answer.get("id") != plan["id"]:
            # Out of step: something wrote to the sandbox's answer channel.
            log.warning("the grading sandbox answered out of turn; restarting it")
            self.close()
            return None
        for run in answer.get("runs", []):
            # Sizes the sandbox measured itself, each at most REPORT_CAP + 1.
            run["data"] = process.stdout.read(int(run["bytes"]))
        return answer

    def _zygote(self) -> subprocess.Popen[bytes]:
        alive = self._process is not None and self._process.poll() is None
        if alive and self._owner == os.getpid():
            assert self._process is not None
            return self._process
        self._workdir = tempfile.mkdtemp(prefix="grader-zygote-")
        environment = kernel_environment(self._workdir)
        environment["PYTHONPATH"] = self.package.path
        started = time.monotonic()
        config = json.dumps({
            "hidden": list(self.options.hidden_paths),
            "memory_bytes": memory_for_all(self.options, 0),
        })
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"{KERNEL_PACKAGE}.zygote", self.options.backend,
             config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._workdir,
            env=environment,
        )
        self._owner = os.getpid()
        # Worker processes of a pool end without running atexit hooks; this
        # finaliser runs there too, so no zygote or folder is left behind.
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)
        log.debug("sandbox started in %.2fs", time.monotonic() - started)
        return self._process


def _ended_with(process: subprocess.Popen[bytes], code: int) -> bool:
    try:
        return process.wait(timeout=5) == code
    except subprocess.TimeoutExpired:
        return False


def _execution_from_answer(
    answer: dict[str, Any], requests: list[dict[str, Any]], key: str
) -> Execution:
    statuses: list[SnippetStatus] = []
    probes: dict[str, Any] = {}
    failed: dict[str, str] = {}
    reports, status = _reports_of_runs(answer, key)
    for report in reports:
        if not isinstance(report, dict):
            continue
        body = report.get("body")
        if report.get("kind") == "snippets" and isinstance(body, dict):
            statuses.extend(_statuses(body.get("statuses")))
        elif report.get("kind") == "probe" and isinstance(body, dict):
            probes[str(body.get("function"))] = body
        elif report.get("kind") == "probe_failed" and isinstance(body, dict):
            failed[str(body.get("function"))] = str(body.get("reason"))[:100]

    runs = {}
    for request in requests:
        name = request["function"]
        if status == "tampered":
            runs[name] = FunctionRun(
                name, "tampered",
                reason="the submission wrote into the grader's report channel, "
                "so none of its results can be trusted")
        elif name in probes:
            runs[name] = read_probe_report(name, probes[name])
        elif failed.get(name) == "timeout":
            runs[name] = FunctionRun(name, "timeout", reason="ran past the time limit")
        elif name in failed:
            runs[name] = FunctionRun(
                name, "crashed",
                reason=f"the process probing it ended abruptly ({failed[name]}): "
                "it may have exited, crashed or run out of memory or stack")
        elif status == "timeout":
            runs[name] = FunctionRun(name, "timeout", reason="ran past the time limit")
        else:
            reason = (f"the submission's process ended before this function's "
                      f"results came back ({answer.get('exit')}; it may have "
                      "exited, crashed or run out of memory)")
            if status == "oversized":
                reason = "the submission sent back more data than allowed"
            runs[name] = FunctionRun(name, "crashed", reason=reason)
    # Said by the serving process, not by the child: the submission's code
    # cannot claim protections it does not have.
    protections = {"engine": "fork",
                   "confinement": _protection_names(answer.get("protections"))}
    backend = answer.get("backend") if isinstance(answer.get("backend"), dict) else {}
    return Execution(runs, tuple(statuses), backend or {}, None, protections)


def _reports_of_runs(answer: dict[str, Any], key: str) -> tuple[list[Any], Any]:
    """The reports of a submission's children in order, and the status.

    A later child runs the snippets again: only the first one's statuses
    count. A line not signed with the request's key, or out of the only
    order the runtime writes in, was written by someone else: the
    student's code, forging.
    """
    signed_by = hmac.new(bytes.fromhex(key), digestmod="sha256")
    status = answer.get("status")
    reports: list[Any] = []
    for index, run in enumerate(answer.get("runs", [])):
        # What the sandbox saw (a flood, or progress out of turn) names the
        # fault even where the lines break off earlier.
        seen = run.get("status") if run.get("status") in ("tampered", "oversized") \
            else None
        order = _ReportOrder(list(run.get("functions", [])))
        *lines, _ = run.get("data", b"").split(b"\n")  # the last line ended?
        for line in lines:
            signature, _, line = line.partition(b" ")
            check = signed_by.copy()
            check.update(line)
            if not hmac.compare_digest(check.hexdigest().encode(), signature):
                return reports, seen or "tampered"
            try:
                report = json.loads(line)
            except (ValueError, RecursionError):
                return reports, seen or "malformed"
            kind = report.get("kind") if isinstance(report, dict) else None
            body = report.get("body") if kind else None
            function = body.get("function") if isinstance(body, dict) else body
            if not order.fits(kind, function):
                return reports, seen or "tampered"
            if kind != "snippets" or index == 0:
                reports.append(report)
        if seen:
            return reports, seen
        if isinstance(run.get("failed"), dict):
            reports.append({"kind": "probe_failed", "body": run["failed"]})
    return reports, status


class _ReportOrder:
    """The only order a child writes its reports in: its snippets once,
    then for each function in turn "probing" and its "probe"."""

    def __init__(self, functions: list[str]) -> None:
        self._waiting = list(functions)
        self._probing: str | None = None
        self._snippets_seen = False

    def fits(self, kind: Any, function: Any) -> bool:
        if kind == "snippets" and not self._snippets_seen:
            self._snippets_seen = True
            return True
        if kind == "probing" and self._snippets_seen and self._probing is None \
                and self._waiting and function == self._waiting[0]:
            self._probing = self._waiting.pop(0)
            return True
        if kind == "probe" and function is not None and function == self._probing:
            self._probing = None
            return True
        return False
