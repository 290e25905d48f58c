"""A warmed process that forks one confined child per submission.

Started once per grading worker with only numpy, the runtime and the
Keras/TensorFlow stand-in imported (never the assignment's reference), it
reads one JSON request per line on stdin, forks a child that runs the
submission's snippets and probes, and answers one JSON line on stdout.

The child: new session (so the whole group can be killed), its own mount,
network and PID namespaces where the platform allows them (see
`confinement`: read-only file system, hidden reference and submissions, no
network, no capabilities, every leftover process ended with it), resource
limits, a private working directory, stdin/stdout/stderr on /dev/null.
Where namespaces are not allowed, only the limits, the private directory
and blocked Python sockets remain; the answer says which. It writes its reports, one JSON
line each, to a pipe as they are ready, so that a child that dies half-way
still leaves what it finished. It leaves with os._exit: atexit hooks and
__del__ methods of student objects never run after grading.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

#: Bytes of reports accepted from one child; more is a failed submission.
REPORT_CAP = 8 * 1024 * 1024


def main() -> None:
    from . import confinement, legacy_backend, runtime  # noqa: F401  (warm imports)

    backend = sys.argv[1] if len(sys.argv) > 1 else "auto"
    config = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    hidden = [str(path) for path in config.get("hidden", [])]
    keep = _python_folders()
    try:
        installed: dict[str, Any] = legacy_backend.install(backend)
    except ModuleNotFoundError as exc:
        installed = {"error": str(exc)}
    namespaces = _namespaces_available()
    for line in sys.stdin:
        request = json.loads(line)
        answer = _grade_in_child(request, namespaces, hidden, keep)
        answer["id"] = request.get("id")
        answer["backend"] = installed
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _namespaces_available() -> bool:
    """Whether children can get namespaces: tried once in a throwaway child."""
    from .confinement import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, unshare

    pid = os.fork()
    if pid == 0:
        os._exit(0 if unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _python_folders() -> list[str]:
    """Where this Python and its packages live: the sandbox must see them."""
    import site

    # Not every sys.path entry: an editable install puts the project's own
    # folder there, with its reference and history.
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = [sys.prefix, sys.base_prefix, *site.getsitepackages(), package]
    return [os.path.realpath(f) for f in folders if f and os.path.isdir(f)]


def _grade_in_child(
    request: dict[str, Any], namespaces: bool, hidden: list[str], keep: list[str]
) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    # The cases go to the child only once its snippets have run, so code that
    # runs at import or definition time never sees the hidden inputs.
    probes_read, probes_write = os.pipe()
    probes = json.dumps(request.pop("probes")).encode() + b"\n"
    request["probes_fd"] = probes_read
    workdir = tempfile.mkdtemp(prefix="grader-submission-")
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        os.close(read_end)
        os.close(probes_write)
        os.setsid()
        if namespaces:
            _enter_namespaces(request, write_end, hidden, keep)
        _child(request, write_end, workdir, [], confined=False)
    os.close(write_end)
    os.close(probes_read)

    deadline = started + float(request.get("timeout", 60))
    reports, status = _collect(read_end, deadline, probes_write, probes)
    os.close(read_end)
    exit_text = _reap(pid, deadline)
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "status": status,
        "exit": exit_text,
        "reports": reports,
        "seconds": round(time.monotonic() - started, 4),
    }


def _enter_namespaces(
    request: dict[str, Any], write_end: int, hidden: list[str], keep: list[str]
) -> None:
    """Become the parent of a child that is the first process of new namespaces."""
    from .confinement import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, confine, unshare

    if not unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID):
        return  # fall back to the weaker isolation in this process
    pid = os.fork()
    if pid == 0:
        try:
            protections = confine(hidden, keep)
            workdir = tempfile.mkdtemp(prefix="submission-", dir="/tmp")
        except OSError:
            os._exit(71)
        _child(request, write_end, workdir, protections, confined=True)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def _collect(
    read_end: int, deadline: float, probes_write: int, probes: bytes
) -> tuple[list[Any], str]:
    """Read the child's report lines; hand over the cases after its snippets."""
    buffer = b""
    size = 0
    status = "finished"
    reports: list[Any] = []
    pending_probes: bytes | None = probes
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select([read_end], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        size += len(chunk)
        if size > REPORT_CAP:
            status = "oversized"
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            try:
                report = json.loads(line)
            except (ValueError, RecursionError):
                status = "malformed"
                break
            reports.append(report)
            if pending_probes is not None and isinstance(report, dict) \
                    and report.get("kind") == "snippets":
                _send(probes_write, pending_probes, deadline)
                pending_probes = None
        if status == "malformed":
            break
    os.close(probes_write)
    return reports, status


def _send(fd: int, data: bytes, deadline: float) -> None:
    while data and time.monotonic() < deadline:
        _, writable, _ = select.select([], [fd], [], max(deadline - time.monotonic(), 0))
        if writable:
            try:
                data = data[os.write(fd, data[:65536]):]
            except BrokenPipeError:
                return


def _reap(pid: int, deadline: float) -> str:
    """Wait for the child until the deadline, then kill its whole group."""
    status = _wait(pid, deadline)
    if status is None:
        _kill_group(pid)
        _, status = os.waitpid(pid, 0)
    # Whatever the submission started in its session goes too.
    _kill_group(pid)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _wait(pid: int, deadline: float) -> int | None:
    """The child's wait status, or None if it still runs at the deadline.

    Sleeps on a process file descriptor where Linux offers one, so that the
    end of the child is seen at once; polls otherwise.
    """
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if handle is not None:
                select.select([handle], [], [], remaining)
            else:
                time.sleep(min(0.002, remaining))
    finally:
        if handle is not None:
            os.close(handle)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child(
    request: dict[str, Any],
    write_end: int,
    workdir: str,
    protections: list[str],
    confined: bool,
) -> None:
    code = 0
    try:
        _isolate(request, workdir, confined)
        from . import runtime

        def report(kind: str, body: Any) -> None:
            line = json.dumps({"kind": kind, "body": body}, allow_nan=False)
            data = (line + "\n").encode()
            while data:
                written = os.write(write_end, data)
                data = data[written:]

        if not confined:
            protections = ["private_workdir", "sockets_blocked"]
        report("confinement", protections + ["resource_limits"])
        namespace: dict[str, Any] = {"__name__": "__main__",
                                     "__builtins__": __builtins__}
        report("snippets", runtime.run_snippets_in(request["snippets"], namespace))
        with os.fdopen(request["probes_fd"], "rb") as handed_over:
            probes = json.loads(handed_over.readline() or b"[]")
        for probe in probes:
            _probe_alone(probe, namespace, report)
    except BaseException:  # nothing may escape a forked child
        code = 70
    finally:
        os._exit(code)


def _probe_alone(probe: dict[str, Any], namespace: dict[str, Any], report: Any) -> None:
    """Probe one function in a child of its own, so that a function that
    exits, crashes or hangs costs only its own verdict."""
    from . import runtime

    limit = float(probe.get("case_timeout", 5)) * max(len(probe["cases"]), 1) + 2
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            report("probe", runtime.probe_namespace(probe, namespace))
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    status = _wait(pid, time.monotonic() + limit)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        report("probe_failed", {"function": probe["function"], "reason": "timeout"})
        return
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        report("probe_failed", {"function": probe["function"], "reason": how})


def _isolate(request: dict[str, Any], workdir: str, confined: bool) -> None:
    os.chdir(workdir)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    limits = request.get("limits", {})
    memory = int(limits.get("memory_bytes", 0))
    if memory:
        # Address space counts what the warmed parent already mapped.
        resource.setrlimit(resource.RLIMIT_AS, (_mapped_bytes() + memory,) * 2)
    cpu = int(limits.get("cpu_seconds", 0))
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    file_size = int(limits.get("file_bytes", 0))
    if file_size:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not confined:
        _block_sockets()


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def _block_sockets() -> None:
    """Weaker fallback: Python-level sockets refuse to be created.

    Known shortcoming: code that reaches the C level (ctypes, a subprocess)
    can still open sockets; only the network namespace stops that."""
    import _socket
    import socket

    class _NoNetwork(socket.socket):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise PermissionError("network access is disabled while grading")

    socket.socket = _NoNetwork  # type: ignore[misc]
    _socket.socket = _NoNetwork  # type: ignore[misc]


if __name__ == "__main__":
    main()
