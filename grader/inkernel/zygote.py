"""A warmed sandbox that forks one child per submission.

Started once per grading worker with only numpy, the runtime and the
Keras/TensorFlow stand-in imported (never the assignment's reference), it
moves into new mount, network and PID namespaces and control groups where
the platform allows them (see `confinement` and `limits`), once. Then it
reads requests on stdin, forks a child that runs the submission's snippets
and probes, and answers one JSON line on stdout.

A request is a line "HEAD_BYTES PROBE_BYTES", the head (JSON: snippets,
limits, and which functions are probed on how many cases), then the
probes themselves (JSON: the cases' inputs). Each request is served by a
fresh fork of the sandbox, which itself never reads one, so that no child
finds another submission in the memory it inherits. The probes never
enter memory at all, not even the serving fork's: the hidden inputs are
the same for every submission, and the child could find them before it is
probed. The kernel moves them from stdin into an anonymous memory file,
and from there into the child's pipe once its snippets have run.

After each submission: a fresh /tmp and /dev/shm. The child: new session,
resource limits, no capabilities, a private working directory,
stdin/stdout/stderr on /dev/null, no file handle of the sandbox but its two
pipes. After it: every process it left is ended. Where namespaces are not
allowed, only the limits, the private directory and blocked Python sockets
remain; the answer says which. The child writes its reports, one JSON line
each, to a pipe as they are ready, so that a child that dies half-way
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



def _sealed_encoder() -> Any:
    """json's encoder with its code's globals and builtins snapshotted now:
    student code that replaces `json.JSONEncoder.iterencode`, the module's
    C encoder or a builtin cannot rewrite what the child reports."""
    import json.encoder as encoder_module

    from .runtime import private_copy, private_globals

    snapshot = private_globals(vars(encoder_module))
    base = json.JSONEncoder
    sealed_class = type("SealedEncoder", (base,), {
        name: private_copy(getattr(base, name), snapshot)
        for name in ("encode", "iterencode", "default")})
    return sealed_class(allow_nan=False).encode


_ENCODE = _sealed_encoder()
#: The runtime's probe, sealed in the serving process before any student
#: code ran anywhere (see `runtime.sealed_probe`).
_SEALED_PROBE: Any = None


def main() -> None:
    from . import confinement, legacy_backend, runtime  # noqa: F401  (warm imports)

    backend = sys.argv[1] if len(sys.argv) > 1 else "auto"
    config = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    hidden = [str(path) for path in config.get("hidden", [])]
    try:
        installed: dict[str, Any] = legacy_backend.install(backend)
    except ModuleNotFoundError as exc:
        installed = {"error": str(exc)}
    global _SEALED_PROBE
    _SEALED_PROBE = runtime.sealed_probe()
    sandbox = _enter_sandbox(hidden, confinement.python_folders(),
                             int(config.get("memory_bytes", 0)))
    while _serve_next(sys.stdin.fileno(), sys.stdout.fileno(), sandbox, installed):
        pass


#: How a request's process says that stdin has ended.
_END_OF_INPUT = 3


def _serve_next(stdin: int, stdout: int, sandbox: Any, installed: Any) -> bool:
    """Serve one request in a process of its own; False once stdin ends.

    That process reads the request, forks the submission's children and
    answers. This one never holds a request in its memory, which every
    child inherits: a submission finds in its own process no other
    student's code, output or results, and none of the hidden inputs.
    """
    pid = os.fork()
    if pid == 0:
        leave = os._exit
        code = 70
        try:
            request = _read_request(stdin)
            if request is None:
                code = _END_OF_INPUT
            else:
                head, held = request
                with held:
                    answer = _grade_in_child(head, held, sandbox)
                answer["id"] = head.get("id")
                answer["backend"] = installed
                _write_all(stdout, (json.dumps(answer) + "\n").encode())
                code = 0
        finally:
            leave(code)
    _, status = os.waitpid(pid, 0)
    if sandbox is not None:
        sandbox.end_leftovers()
        # A fresh /tmp and /dev/shm for the next submission, made now, after
        # this one's answer is on its way: unmounting waits on the kernel,
        # and what it left stops being charged to the memory group at once.
        sandbox.renew_scratch()
    ended = os.WIFEXITED(status) and os.WEXITSTATUS(status) == _END_OF_INPUT
    if not ended and status != 0:
        # No answer will come: one the grader will not take, so that it
        # restarts this sandbox at once instead of waiting for its deadline.
        _write_all(stdout, b'{"id": null, "status": "sandbox_failed"}\n')
    return not ended


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _enter_sandbox(hidden: list[str], keep: list[str], memory_bytes: int) -> Any:
    """Go on serving as the first process of new namespaces, set up once.

    Setting up namespaces and mounts costs several milliseconds of kernel
    time; done once per worker instead of once per submission, a
    submission costs one fork. This process stays outside, waits for the
    one that serves, removes its control groups and leaves with its status.
    Returns the confined sandbox in the process that serves, or None where
    namespaces are not allowed (submissions then run with the weaker
    fallback isolation).
    """
    from .confinement import (
        CLONE_NEWIPC,
        CLONE_NEWNET,
        CLONE_NEWNS,
        CLONE_NEWPID,
        PR_SET_PDEATHSIG,
        Sandbox,
        _c,
        unshare,
    )
    from .limits import SandboxGroups

    if not unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC):
        return None
    groups = SandboxGroups(memory_bytes)
    groups.keep_reach()
    pid = os.fork()
    if pid == 0:
        # Ended with the process outside, and with it the whole namespace.
        _c().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:
            os._exit(70)  # the process outside is gone already
        groups.let_go()
        # The process limit counts the sandbox's own processes too; the
        # memory limit only the submissions', which join its group
        # themselves: out of memory, the kernel ends a submission's
        # process, never the sandbox's.
        joined = groups.join(("pids",))
        memory_handles, memory_said = groups.open_for_children("memory")
        spared = _set_oom_score(-1000) or bool(memory_handles)
        try:
            sandbox = Sandbox(hidden, keep)
        except OSError:
            os._exit(71)
        sandbox.group_handles = memory_handles
        sandbox.limits = joined + memory_said + (["oom_spares_sandbox"] if spared else [])
        return sandbox
    # Told to stop (the grader gave up on an answer, or is closing): the
    # sandbox ends with every process in it, and its groups go.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)  # resumed after the handler (PEP 475)
    groups.remove()
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def _read_request(stdin: int) -> tuple[dict[str, Any], _HeldProbes] | None:
    """The next request's head, and its probes held outside memory; None
    at the end of stdin. Reads no byte past the request."""
    sizes = _read_line(stdin, 64)
    if not sizes:
        return None
    head_size, probes_size = (int(part) for part in sizes.split())
    head = json.loads(_read_exactly(stdin, head_size))
    return head, _HeldProbes(stdin, probes_size)


def _read_line(fd: int, limit: int) -> bytes:
    """One short line, read a byte at a time: nothing after it is taken."""
    line = b""
    while len(line) < limit:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            return line
        line += byte
    raise ValueError("request line too long")


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("request cut short")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _HeldProbes:
    """A request's probes in an anonymous memory file, moved there from
    stdin by the kernel (splice) and handed to a child the same way
    (sendfile), never through this process's memory.

    Where Linux's calls are missing, the bytes pass through memory: the
    children can then find the inputs of earlier requests there.
    """

    def __init__(self, stdin: int, size: int) -> None:
        self.size = size
        self._file = _memory_file()
        moved = 0
        while moved < size:
            done = _move(stdin, self._file, size - moved)
            if not done:
                raise EOFError("request cut short")
            moved += done

    def send(self, pipe: int, deadline: float) -> None:
        """The probes and a newline into `pipe`, until `deadline`."""
        offset = 0
        while offset < self.size and time.monotonic() < deadline:
            _, writable, _ = select.select(
                [], [pipe], [], max(deadline - time.monotonic(), 0))
            if not writable:
                continue
            try:
                offset += _copy_out(pipe, self._file, offset, self.size - offset)
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return
        _send(pipe, b"\n", deadline)

    def __enter__(self) -> _HeldProbes:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self._file)


def _memory_file() -> int:
    try:
        return os.memfd_create("probes", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        handle, path = tempfile.mkstemp(prefix="probes-")
        os.unlink(path)
        return handle


def _move(stdin: int, file: int, count: int) -> int:
    try:
        return os.splice(stdin, file, min(count, 1 << 20))
    except (AttributeError, OSError):
        return os.write(file, os.read(stdin, min(count, 1 << 16)))


def _copy_out(pipe: int, file: int, offset: int, count: int) -> int:
    try:
        return os.sendfile(pipe, file, offset, count)
    except (BlockingIOError, BrokenPipeError):
        raise  # the pipe's state, for the caller
    except (AttributeError, OSError):
        return os.write(pipe, os.pread(file, min(count, 1 << 16), offset))


def _set_oom_score(score: int) -> bool:
    try:
        with open("/proc/self/oom_score_adj", "w") as adjust:
            adjust.write(str(score))
    except OSError:
        return False
    return True


def _grade_in_child(
    request: dict[str, Any], held: _HeldProbes, sandbox: Any
) -> dict[str, Any]:
    """Run the submission and probe every function in one child.

    Probing in the same process is the fast path. A function whose probing
    ends the child (it exits, crashes or hangs past the deadline) is failed
    alone: the functions after it are probed again in a fresh child.
    """
    started = time.monotonic()
    # What is probed, on how many cases; the cases themselves stay held.
    waiting = request.pop("probe_plan")
    # One deadline for the submission, however many children it takes: the
    # grader waits only so long for the answer.
    request["deadline"] = started + float(request.get("timeout", 60))
    reports: list[Any] = []
    while True:
        run_reports, status, exit_text = _run_child(request, waiting, held, sandbox)
        if reports:  # a second run: its snippets were reported already
            run_reports = [r for r in run_reports if _kind(r) != "snippets"]
        reports += run_reports
        done = {_function(r) for r in run_reports if _kind(r) == "probe"}
        begun = [_function(r) for r in run_reports if _kind(r) == "probing"]
        unfinished = [p for p in waiting if p["function"] not in done]
        if not unfinished or status not in ("finished", "timeout") or not begun \
                or begun[-1] in done:
            break
        culprit = begun[-1]
        reason = "timeout" if status == "timeout" else exit_text
        reports.append({"kind": "probe_failed",
                        "body": {"function": culprit, "reason": reason}})
        waiting = [p for p in unfinished if p["function"] != culprit]
        if not waiting:
            status = "finished"
            break
    if sandbox is not None:
        protections = sandbox.protections()
    else:
        protections = ["private_workdir", "sockets_blocked"]
    return {
        "status": status,
        "exit": exit_text,
        "reports": reports,
        "protections": protections + ["resource_limits"],
        "seconds": round(time.monotonic() - started, 4),
    }


def _kind(report: Any) -> Any:
    return report.get("kind") if isinstance(report, dict) else None


def _function(report: Any) -> Any:
    body = report.get("body")
    return body.get("function") if isinstance(body, dict) else body


def _run_child(
    request: dict[str, Any], plan: list[Any], held: _HeldProbes, sandbox: Any
) -> tuple[list[Any], str, str]:
    # /tmp and /dev/shm were renewed after the previous submission (a retry
    # of this one's functions finds what its own first child left).
    read_end, write_end = os.pipe()
    # The cases go to the child only once its snippets have run, so code that
    # runs at import or definition time never sees the hidden inputs.
    probes_read, probes_write = os.pipe()
    # Never blocked by a child that stops reading: the deadline holds.
    os.set_blocking(probes_write, False)
    request["probes_fd"] = probes_read
    # In the sandbox, the fresh /tmp: TMPDIR names a folder of the machine's.
    workdir = tempfile.mkdtemp(prefix="submission-",
                               dir="/tmp" if sandbox is not None else None)
    if sandbox is not None:
        from .confinement import NOBODY

        # The submission runs as nobody (see Sandbox.confine_child).
        os.chown(workdir, NOBODY, NOBODY)
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        os.close(read_end)
        os.close(probes_write)
        os.setsid()
        _child(request, write_end, workdir, sandbox)
    os.close(write_end)
    os.close(probes_read)

    deadline = request["deadline"]
    reports, status = _collect(pid, read_end, deadline, probes_write, plan, held)
    os.close(read_end)
    # Past a function's own limit the child is ended at once.
    exit_text = _reap(pid, time.monotonic() if status == "timeout" else deadline)
    if sandbox is not None:
        sandbox.end_leftovers()
    shutil.rmtree(workdir, ignore_errors=True)
    return reports, status, exit_text


def _collect(
    pid: int, read_end: int, deadline: float, probes_write: int, plan: list[Any],
    held: _HeldProbes,
) -> tuple[list[Any], str]:
    """Read the child's report lines; hand over the cases after its snippets.

    Reading stops at the deadline (the submission's, or the function's
    being probed), or once the child has ended and what it wrote is read:
    processes it started may hold the pipe open.
    """
    limits = {p["function"]: float(p.get("case_timeout", 5)) * max(int(p["cases"]), 1) + 2
              for p in plan}
    submission_deadline = deadline
    buffer = b""
    size = 0
    status = "finished"
    reports: list[Any] = []
    functions = [p["function"] for p in plan]
    expected = _ReportOrder(functions)
    watch = _end_watch(pid)
    child_ended = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select([read_end] + watch, [], [],
                                    0 if child_ended else remaining)
        if watch and watch[0] in ready:
            os.close(watch.pop())
            child_ended = True
            continue  # read on until the pipe holds nothing more
        if not ready:
            if child_ended:
                break
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
            kind = _kind(report)
            if not expected.fits(kind, _function(report) if kind else None):
                # Another writer on the pipe: the student's code, forging.
                status = "tampered"
                break
            if kind == "snippets":
                # Which functions this child probes, then all the cases.
                _send(probes_write, json.dumps(functions).encode() + b"\n", deadline)
                held.send(probes_write, deadline)
            elif kind == "probing":
                deadline = min(submission_deadline,
                               time.monotonic() + limits[report["body"]])
            elif kind == "probe":
                deadline = submission_deadline
        if status in ("malformed", "tampered"):
            break
    for handle in watch:
        os.close(handle)
    os.close(probes_write)
    return reports, status


class _ReportOrder:
    """The only order the child writes its reports in: its snippets once,
    then for each function in turn "probing" and its "probe". A report out
    of that order was written by someone else on the pipe."""

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


def _end_watch(pid: int) -> list[int]:
    """A handle that becomes readable when `pid` ends, where Linux has one."""
    try:
        return [os.pidfd_open(pid)]
    except (AttributeError, OSError):
        return []


def _send(fd: int, data: bytes, deadline: float) -> None:
    while data and time.monotonic() < deadline:
        _, writable, _ = select.select([], [fd], [], max(deadline - time.monotonic(), 0))
        if writable:
            try:
                data = data[os.write(fd, data[:65536]):]
            except BlockingIOError:
                continue
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
    watch = _end_watch(pid)
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if watch:
                select.select(watch, [], [], remaining)
            else:
                time.sleep(min(0.002, remaining))
    finally:
        for handle in watch:
            os.close(handle)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child(
    request: dict[str, Any], write_end: int, workdir: str, sandbox: Any
) -> None:
    code = 0
    leave = os._exit  # taken now: student code may replace os._exit
    try:
        for handle in sandbox.group_handles if sandbox is not None else ():
            os.write(handle, b"0")  # into the submissions' memory group
        _close_other_files(write_end, request["probes_fd"])
        _isolate(request, workdir, sandbox)
        from . import runtime

        # Taken before the student's code runs, which may replace names in
        # the modules: json, os.write and os._exit, the runtime's helpers.
        encode, write, loads = _ENCODE, os.write, json.loads
        probe_namespace = _SEALED_PROBE

        def report(kind: str, body: Any) -> None:
            data = (encode({"kind": kind, "body": body}) + "\n").encode()
            while data:
                written = write(write_end, data)
                data = data[written:]

        namespace: dict[str, Any] = {"__name__": "__main__",
                                     "__builtins__": __builtins__}
        report("snippets", runtime.run_snippets_in(request["snippets"], namespace))
        with os.fdopen(request["probes_fd"], "rb") as handed_over:
            functions = loads(handed_over.readline() or b"[]")
            every = {probe["function"]: probe
                     for probe in loads(handed_over.readline() or b"[]")}
        for probe in (every[name] for name in functions):
            report("probing", probe["function"])
            report("probe", probe_namespace(probe, namespace))
    except BaseException:  # noqa: BLE001  (nothing may escape a forked child)
        code = 70
    finally:
        leave(code)


def _close_other_files(*kept: int) -> None:
    """The submission gets no handle of the serving process but its pipes
    (a handle on a folder opened before the mounts would reach past them)."""
    low = 3
    for fd in sorted(kept):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _isolate(request: dict[str, Any], workdir: str, sandbox: Any) -> None:
    os.chdir(workdir)
    # The serving process ignores SIGINT and the out-of-memory killer;
    # the student's code gets Python's usual handler and no such favour.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _set_oom_score(0)
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
    if sandbox is not None:
        sandbox.confine_child()
    else:
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
