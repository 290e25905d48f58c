"""A warmed sandbox that forks one child per submission.

Started once per grading worker with only numpy, the runtime and the
Keras/TensorFlow stand-in imported (never the assignment's reference), it
moves into new mount, network and PID namespaces and control groups where
the platform allows them (see `confinement` and `limits`), once. Then it
reads requests on stdin, hands each to a child that runs the submission's
snippets and probes, and answers on stdout.

A request is a line "PLAN_BYTES CODE_BYTES PROBE_BYTES", then the plan
(JSON: which functions are probed on how many cases, the time allowed),
the code (JSON: the snippets and the resource limits) and the probes
(JSON: the cases' inputs). The sandbox reads only the plan, which is the
same for every submission. Whatever a submission could find in the memory
it inherits never enters the sandbox's memory: its code and the probes go
from stdin into anonymous memory files and on into the child's pipe by the
kernel (splice, sendfile), the probes only once its snippets have run; the
child's reports go from its pipe into a memory file and on to stdout the
same way. What the sandbox learns of a child's progress is one byte of a
known set at a time (`_SNIPPETS_RUN`, ...).

The answer is a JSON line (status, protections, and for each child it
took: the functions it was given, how it ended, the size of its reports),
then the reports of each child, one signed JSON line each, as it wrote
them, so that a child that dies half-way still leaves what it finished.

The children are forked by a template: a copy of the sandbox made before
it served anything, so that no child inherits what the sandbox learnt of
the ones before (how they ended, how much they reported). The child for
the next submission is forked in advance, once the previous one is done
and /tmp and /dev/shm are as new: new session, resource
limits, no capabilities, user nobody, a private working directory,
stdin/stdout/stderr on /dev/null, no file handle of the sandbox but its
three pipes. After it: every process it left is ended. Where namespaces are
not allowed, only the limits, the private directory and blocked Python
sockets remain; the answer says which. The child leaves with os._exit:
atexit hooks and __del__ methods of student objects never run after
grading.
"""

from __future__ import annotations

import _hashlib  # type: ignore[import-not-found]
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

#: Bytes of reports accepted from one child; more is a failed submission.
REPORT_CAP = 8 * 1024 * 1024
#: How the sandbox ends when cleaning up after an answered submission
#: failed: the next request is not that submission's fault.
CLEANUP_FAILED = 75



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
    # Separators given, so that they are the instance's own: json's class
    # defaults can be changed by anyone.
    return sealed_class(allow_nan=False, separators=(", ", ": ")).encode


def _sealed_decoder() -> Any:
    """json's C scanner, which took its settings when it was made:
    replacing json's functions or classes later changes nothing of what
    the child reads."""
    scan = json.JSONDecoder().scan_once

    def decode(line: bytes) -> Any:
        return scan(line.decode(), 0)[0]

    return decode


_ENCODE = _sealed_encoder()
_DECODE = _sealed_decoder()
#: The runtime's probe, sealed in the serving process before any student
#: code ran anywhere (see `runtime.sealed_probe`).
_SEALED_PROBE: Any = None
#: What a child takes into its own hands and then removes from this
#: module, which the submission can reach as sys.modules["__main__"].
_SEALED = ("_ENCODE", "_DECODE", "_SEALED_PROBE")


def main() -> None:
    from . import confinement, legacy_backend, runtime

    backend = sys.argv[1] if len(sys.argv) > 1 else "auto"
    config = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    hidden = [str(path) for path in config.get("hidden", [])]
    try:
        installed: dict[str, Any] = legacy_backend.install(backend)
    except ModuleNotFoundError as exc:
        installed = {"error": str(exc)}
    global _SEALED_PROBE
    _SEALED_PROBE = runtime.sealed_probe()
    # OpenSSL set up (its configuration read, the digest looked up) here,
    # once: in each child it would cost milliseconds per submission.
    _signer("00" * 32)(b"")
    confinement.name_process("grader-sandbox")
    sandbox = _enter_sandbox(hidden, confinement.python_folders(),
                             int(config.get("memory_bytes", 0)))
    _serve(sys.stdin.fileno(), sys.stdout.fileno(), sandbox, installed)


def _serve(stdin: int, stdout: int, sandbox: Any, installed: Any) -> None:
    """Answer requests until stdin ends.

    The child for the next submission is forked while the grader prepares
    it: joining the memory group and dropping privileges (milliseconds of
    waiting on the kernel) are done by the time its request comes.
    """
    parent = _Template.start(sandbox) if hasattr(os, "pidfd_open") else _Direct()
    waiting: _Child | None = _Child.start(sandbox, parent)
    try:
        while True:
            request = _read_request(stdin)
            if request is None:
                return
            plan, held = request
            child, waiting = waiting, None
            with held:
                header, runs = _grade(plan, held, child, sandbox)
            header["id"] = plan.get("id")
            header["backend"] = installed
            _answer(stdout, header, runs)
            try:
                for run in runs:
                    if run.child is not None:
                        run.child.end()
                if sandbox is not None:
                    # A fresh /tmp and /dev/shm for the next submission, made
                    # now, after this one's answer is on its way.
                    sandbox.renew_scratch()
                waiting = _Child.start(sandbox, parent)
            except Exception:
                # Unfit to serve another submission: the grader starts a
                # fresh sandbox and sends it the request it may have sent.
                os._exit(CLEANUP_FAILED)
    finally:
        if waiting is not None:
            waiting.discard()
        parent.close()


def _answer(stdout: int, header: dict[str, Any], runs: list[_Run]) -> None:
    """The header line, then each run's reports as the child wrote them.

    The reports go from their memory file to stdout by the kernel: this
    process never reads what a submission wrote.
    """
    header["runs"] = [run.summary() for run in runs]
    _write_all(stdout, (json.dumps(header) + "\n").encode())
    for run in runs:
        with run.reports:
            run.reports.send_all(stdout)


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
        spared_said = ["oom_spares_sandbox"] if spared else []
        sandbox.limits = joined + memory_said + spared_said
        return sandbox
    # Told to stop (the grader gave up on an answer, or is closing): the
    # sandbox ends with every process in it, and its groups go.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)  # resumed after the handler (PEP 475)
    groups.remove()
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def _read_request(stdin: int) -> tuple[dict[str, Any], _HeldRequest] | None:
    """The next request's plan, and what goes to the child held outside
    memory; None at the end of stdin. Reads no byte past the request."""
    sizes = _read_line(stdin, 64)
    if not sizes:
        return None
    plan_size, code_size, probes_size = (int(part) for part in sizes.split())
    plan = json.loads(_read_exactly(stdin, plan_size))
    code = _Held.moved_from(stdin, code_size, "submission")
    try:
        probes = _Held.moved_from(stdin, probes_size, "probes")
    except BaseException:
        code.close()
        raise
    return plan, _HeldRequest(code, probes)


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


class _Held:
    """Bytes in an anonymous memory file, moved there by the kernel
    (splice) and passed on the same way (sendfile), never through this
    process's memory.

    Where Linux's calls are missing, the bytes pass through memory: the
    children can then find the inputs of earlier requests there.
    """

    def __init__(self, name: str) -> None:
        self.size = 0
        self._file = _memory_file(name)

    @classmethod
    def moved_from(cls, stdin: int, size: int, name: str) -> _Held:
        held = cls(name)
        try:
            while held.size < size:
                done = _move(stdin, held._file, size - held.size)
                if not done:
                    raise EOFError("request cut short")
                held.size += done
        except BaseException:
            held.close()
            raise
        return held

    def take_from(self, pipe: int, most: int) -> bool:
        """What `pipe` holds now, up to `most` bytes in all; False at its
        end."""
        done = _move(pipe, self._file, max(most - self.size, 1))
        self.size += done
        return done > 0

    def send(self, pipe: int, deadline: float) -> None:
        """The bytes and a newline into non-blocking `pipe`, until
        `deadline`."""
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

    def send_all(self, out: int) -> None:
        """All the bytes into blocking `out`."""
        offset = 0
        while offset < self.size:
            offset += _copy_out(out, self._file, offset, self.size - offset)

    def close(self) -> None:
        os.close(self._file)

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _HeldRequest:
    """A request's part for the child: its code (the snippets and limits),
    and the probes, which go to it once its snippets have run."""

    def __init__(self, code: _Held, probes: _Held) -> None:
        self.code = code
        self.probes = probes

    def __enter__(self) -> _HeldRequest:
        return self

    def __exit__(self, *_: object) -> None:
        self.code.close()
        self.probes.close()


def _memory_file(name: str) -> int:
    try:
        return os.memfd_create(name, os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        handle, path = tempfile.mkstemp(prefix=f"{name}-")
        os.unlink(path)
        return handle


def _move(source: int, file: int, count: int) -> int:
    """Bytes moved from pipe `source` into `file`; 0 at its end, or when
    a non-blocking pipe holds nothing now."""
    try:
        return os.splice(source, file, min(count, 1 << 20))
    except BlockingIOError:
        return 0
    except (AttributeError, OSError):
        try:
            data = os.read(source, min(count, 1 << 16))
        except BlockingIOError:
            return 0
        return os.write(file, data)


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


#: The bytes a child tells the sandbox, one at a time, as it goes: its
#: snippets have run; it is probing function i of its list; it has
#: reported function i. Read into one reused byte and checked against the
#: one expected, they leave none of the child's words in the sandbox's
#: memory (which matters where it forks the children itself: `_Direct`).
_SNIPPETS_RUN = 0x01
_PROBING = 0x10
_PROBED = 0x40
#: Functions one child can be told about (the byte ranges above). Known
#: shortcoming: an assignment with more graded functions would have the
#: rest failed as never answered; none comes near.
_MOST_FUNCTIONS = _PROBED - _PROBING


def _grade(
    plan: dict[str, Any], held: _HeldRequest, child: _Child, sandbox: Any
) -> tuple[dict[str, Any], list[_Run]]:
    """Run the submission and probe every function in one child.

    Probing in the same process is the fast path. A function whose probing
    ends the child (it exits, crashes or hangs past the deadline) is failed
    alone: the functions after it are probed again in a fresh child.
    """
    started = time.monotonic()
    waiting = list(plan["probe_plan"])[:_MOST_FUNCTIONS]
    # One deadline for the submission, however many children it takes: the
    # grader waits only so long for the answer.
    deadline = started + float(plan.get("timeout", 60))
    runs: list[_Run] = []
    while True:
        run = child.run(waiting, held, deadline)
        runs.append(run)
        unfinished = [p for i, p in enumerate(waiting) if i not in run.done]
        begun = run.begun
        if not unfinished or run.status not in ("finished", "timeout") \
                or begun is None or begun in run.done:
            status = run.status
            break
        culprit = waiting[begun]["function"]
        reason = "timeout" if run.status == "timeout" else run.exit
        run.failed = {"function": culprit, "reason": reason}
        waiting = [p for p in unfinished if p["function"] != culprit]
        if not waiting:
            status = "finished"
            break
        child = _Child.start(sandbox, child.parent)
    if sandbox is not None:
        protections = sandbox.protections()
    else:
        protections = ["private_workdir", "sockets_blocked"]
    header = {
        "status": status,
        "exit": runs[-1].exit,
        "protections": protections + ["resource_limits"],
        "seconds": round(time.monotonic() - started, 4),
    }
    return header, runs


class _Run:
    """One child's run: what it reported (held, unread), how it ended."""

    def __init__(self, functions: list[str]) -> None:
        self.functions = functions
        self.reports = _Held("reports")
        self.status = "finished"
        self.exit = ""
        #: Index of the function it began probing last; the ones it reported.
        self.begun: int | None = None
        self.done: set[int] = set()
        #: Said by the sandbox: the function whose probing ended the child.
        self.failed: dict[str, str] | None = None
        #: The child, when it is ended only after the answer is sent.
        self.child: _Child | None = None

    def summary(self) -> dict[str, Any]:
        return {"functions": self.functions, "bytes": self.reports.size,
                "status": self.status, "failed": self.failed}


class _Child:
    """A forked child that will run one submission, and its three pipes.

    Forked before its request comes: it joins the memory group, gives up
    its privileges and waits for the submission's code on its inbox.
    """

    def __init__(self, pid: int, pipes: list[int], pidfd: int | None,
                 workdir: str, sandbox: Any, parent: Any) -> None:
        self.pid = pid
        self.inbox, self.signals, self.reports = pipes
        #: Readable once the child has ended (None where Linux has none).
        self.pidfd = pidfd
        self.workdir = workdir
        self.sandbox = sandbox
        self.parent = parent
        self._status: int | None = None

    @classmethod
    def start(cls, sandbox: Any, parent: Any) -> _Child:
        # In the sandbox, its /tmp (TMPDIR names a folder of the machine's).
        workdir = sandbox.new_workdir() if sandbox is not None \
            else tempfile.mkdtemp(prefix="submission-")
        pid, pipes, pidfd = parent.fork(workdir, sandbox)
        # Never blocked by a child that stops reading: the deadline holds.
        os.set_blocking(pipes[0], False)
        return cls(pid, pipes, pidfd, workdir, sandbox, parent)

    def run(self, plan: list[dict[str, Any]], held: _HeldRequest,
            deadline: float) -> _Run:
        """Hand over the code, then the probes once its snippets have run;
        follow it until it ends or a deadline passes."""
        functions = [p["function"] for p in plan]
        run = _Run(functions)
        limits = [float(p.get("case_timeout", 5)) * max(int(p["cases"]), 1) + 2
                  for p in plan]
        submission_deadline = deadline
        held.code.send(self.inbox, deadline)
        told = bytearray(1)
        expected = _SNIPPETS_RUN
        watch = [self.pidfd] if self.pidfd is not None else []
        sources = [self.signals, self.reports]
        child_ended = False
        while sources:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                run.status = "timeout"
                break
            ready, _, _ = select.select(sources + watch, [], [],
                                        0 if child_ended else remaining)
            if not ready:
                if child_ended:
                    break  # ended, and what it wrote is taken
                continue
            if watch and watch[0] in ready:
                watch = []
                child_ended = True
                continue  # read on until the pipes hold nothing more
            if self.reports in ready:
                if not run.reports.take_from(self.reports, REPORT_CAP + 1):
                    sources.remove(self.reports)
                elif run.reports.size > REPORT_CAP:
                    run.status = "oversized"
                    break
            if self.signals not in ready:
                continue
            if not os.readv(self.signals, [told]):
                sources.remove(self.signals)
                continue
            if told[0] != expected:
                # Not the child's runtime: the student's code, forging.
                run.status = "tampered"
                break
            if told[0] == _SNIPPETS_RUN:
                # Which functions this child probes, then all the cases.
                _send(self.inbox, json.dumps(functions).encode() + b"\n", deadline)
                held.probes.send(self.inbox, deadline)
                expected = _PROBING
            elif told[0] < _PROBED:
                run.begun = told[0] - _PROBING
                deadline = min(submission_deadline,
                               time.monotonic() + limits[run.begun])
                expected = _PROBED + run.begun
            else:
                run.done.add(told[0] - _PROBED)
                deadline = submission_deadline
                expected = _PROBING + len(run.done)
                if len(run.done) == len(functions):
                    # Everything is reported: its last lines are in the
                    # pipe already (written before this byte).
                    self._drain(run)
                    break
        if len(run.done) == len(functions) and run.status == "finished":
            # The answer need not wait while the kernel takes the child's
            # memory apart: it is ended once the answer is sent.
            run.child = self
            return run
        # Past a function's own limit, or caught forging or flooding, the
        # child is ended at once.
        run.exit = self._reap(deadline if run.status == "finished"
                              else time.monotonic())
        self._close()
        return run

    def _drain(self, run: _Run) -> None:
        os.set_blocking(self.reports, False)
        while run.reports.take_from(self.reports, REPORT_CAP + 1):
            if run.reports.size > REPORT_CAP:
                run.status = "oversized"
                return

    def end(self) -> None:
        """End a child whose answer is sent (it is leaving already)."""
        self._reap(time.monotonic())
        self._close()

    def discard(self) -> None:
        """End a child that was never given a submission."""
        self._reap(time.monotonic())
        self._close()

    def _reap(self, deadline: float) -> str:
        """How the child ended; killed, with its whole group, if it still
        runs at the deadline."""
        if not self._ended_by(deadline):
            _kill_group(self.pid)
            try:  # not in a group of its own yet, perhaps
                if self.pidfd is not None:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                else:
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        status = self._status if self._status is not None \
            else self.parent.status(self.pid)
        # Whatever the submission started in its session goes too.
        _kill_group(self.pid)
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit status {os.WEXITSTATUS(status)}"

    def _ended_by(self, deadline: float) -> bool:
        """Whether the child ends by the deadline: its process handle says
        so at once where Linux offers one; polled otherwise."""
        while True:
            remaining = deadline - time.monotonic()
            if self.pidfd is not None:
                ready, _, _ = select.select([self.pidfd], [], [], max(remaining, 0))
                return bool(ready)
            self._status = self.parent.status(self.pid, block=False)
            if self._status is not None:
                return True
            if remaining <= 0:
                return False
            time.sleep(min(0.002, remaining))

    def _close(self) -> None:
        for end in (self.inbox, self.signals, self.reports):
            os.close(end)
        if self.pidfd is not None:
            os.close(self.pidfd)
        if self.sandbox is not None:
            self.sandbox.end_leftovers(spare=self.parent.spare,
                                       reap=self.parent.reap_strays)
            if not _small(self.workdir):
                # Removing a million links one by one takes seconds, spent
                # before the next submission's request is read: the folder
                # is left, so /tmp is replaced, at a fraction of the cost.
                return
        try:
            shutil.rmtree(self.workdir, ignore_errors=True)
        except RecursionError:
            pass  # folders nested thousands deep: /tmp is replaced instead


def _small(folder: str, most: int = 10_000) -> bool:
    """Whether `folder` holds at most `most` entries, counted until there
    are more (so at a bounded cost)."""
    count, waiting = 0, [folder]
    while waiting:
        try:
            with os.scandir(waiting.pop()) as entries:
                for entry in entries:
                    count += 1
                    if count > most:
                        return False
                    if entry.is_dir(follow_symlinks=False):
                        waiting.append(entry.path)
        except OSError:
            continue
    return True


class _Direct:
    """The sandbox forks each child itself, where Linux has no process
    handles to follow another's child. Known shortcoming: the child then
    inherits the sandbox's memory, and what it learnt of earlier children
    (how they ended, how much they reported)."""

    spare: tuple[int, ...] = ()

    @staticmethod
    def fork(workdir: str, sandbox: Any) -> tuple[int, list[int], int | None]:
        return _fork_child(workdir, sandbox)

    @staticmethod
    def status(pid: int, block: bool = True) -> int | None:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        return status if done else None

    @staticmethod
    def reap_strays() -> None:
        pass  # the sandbox is their parent: it reaps them with every orphan

    def close(self) -> None:
        pass


class _Template:
    """A copy of the sandbox made before it served anything, which forks
    the children: they inherit nothing the sandbox learnt since, so no
    submission finds in its memory how an earlier one ended.

    It is told what to do over a socket: fork a child for a working
    folder (it answers with the child's process number, and passes the
    sandbox's ends of the child's pipes and a handle on the process), or
    reap one (it answers with the kernel's record of how the child ended,
    from a buffer it then clears).
    """

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.spare = (pid,)
        self._control = control
        self._forked: set[int] = set()

    @classmethod
    def start(cls, sandbox: Any) -> _Template:
        ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # never returns from here
            ours.close()
            _serve_as_template(its, sandbox)
        its.close()
        return cls(pid, ours)

    def fork(self, workdir: str, sandbox: Any) -> tuple[int, list[int], int | None]:
        self._control.send(b"f" + workdir.encode())
        said, handles, _, _ = socket.recv_fds(self._control, 64, 4)
        if len(handles) < 3:
            raise OSError("the template could not fork a child")
        self._forked.add(int(said))
        return int(said), handles[:3], handles[3] if len(handles) > 3 else None

    def reap_strays(self) -> None:
        """Have the template reap its ended children that it did not fork
        for us (those it forked and we have not asked about are spared)."""
        self._control.send(b"r" + b",".join(b"%d" % pid for pid in self._forked))
        self._control.recv(1)

    def status(self, pid: int, block: bool = True) -> int | None:
        """How the child ended, as a wait status; None if `block` is False
        and it still runs (polled where the template got no handle on
        it)."""
        self._control.send(b"%s%d" % (b"w" if block else b"n", pid))
        record = self._control.recv(_SIGINFO_BYTES)
        if not block and not int.from_bytes(record[16:20], "little", signed=True):
            return None  # no child reported: it runs on
        self._forked.discard(pid)
        code = int.from_bytes(record[8:12], "little", signed=True)
        value = int.from_bytes(record[24:28], "little", signed=True) & 0xFF
        # As a wait status: an exit code, or the signal that ended it.
        return value << 8 if code == _CLD_EXITED else value

    def close(self) -> None:
        self._control.close()  # it ends at the end of its socket
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


#: waitid's record of a child (siginfo_t): its size, and how a child that
#: exited (rather than was killed) is marked.
_SIGINFO_BYTES = 128
_CLD_EXITED = 1
_P_PID = 1
_WEXITED = 4
_WNOHANG = 1


def _serve_as_template(control: socket.socket, sandbox: Any) -> None:
    from .confinement import _c, name_process

    name_process("grader-template")
    # The grader's pipes are the sandbox's to use: only the socket here.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    libc = _c()
    record = ctypes.create_string_buffer(_SIGINFO_BYTES)
    code = 0
    try:
        while True:
            order = control.recv(4096)
            if not order:
                break
            if order[:1] == b"f":
                pid, pipes, pidfd = _fork_child(order[1:].decode(), sandbox,
                                                control.fileno())
                handles = pipes + ([pidfd] if pidfd is not None else [])
                socket.send_fds(control, [b"%d" % pid], handles)
                for handle in handles:
                    os.close(handle)
            elif order[:1] in (b"w", b"n"):
                # Into a buffer of ctypes and out again: no Python object
                # ever holds how the child ended, for the next to find.
                # "n": do not wait (the record stays empty if it runs on).
                flags = _WEXITED | (_WNOHANG if order[:1] == b"n" else 0)
                libc.waitid(_P_PID, int(order[1:]), record, flags)
                control.send(record)
                ctypes.memset(record, 0, _SIGINFO_BYTES)
            elif order[:1] == b"r":
                _reap_strays({int(pid) for pid in order[1:].split(b",") if pid},
                             libc, record)
                ctypes.memset(record, 0, _SIGINFO_BYTES)
                control.send(b".")
    except BaseException:  # noqa: BLE001  (a forked process leaves only here)
        code = 70
    os._exit(code)


def _reap_strays(spared: set[int], libc: Any, record: Any) -> None:
    """Reap every ended child of this process but `spared`: a process a
    submission started with CLONE_PARENT is ours, not the sandbox's, and
    would otherwise stay a zombie (where no system call filter stops it)."""
    for pid in _children() - spared:
        libc.waitid(_P_PID, pid, record, _WEXITED | _WNOHANG)


def _children() -> set[int]:
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children", "rb") as listed:
            return {int(pid) for pid in listed.read().split()}
    except OSError:  # a kernel without that file: every process is read
        pass
    found = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            found.add(int(name))
    return found


def _fork_child(workdir: str, sandbox: Any, *closed: int
                ) -> tuple[int, list[int], int | None]:
    """Fork a child for `workdir`: its pid, the other ends of its pipes
    (inbox to write, progress and reports to read) and a handle on it."""
    inbox_read, inbox = os.pipe()
    signals, signals_write = os.pipe()
    reports, reports_write = os.pipe()
    if sandbox is not None:
        sandbox.number_processes_afresh()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        for handle in closed:
            os.close(handle)
        _child(inbox_read, signals_write, reports_write, workdir, sandbox)
    for end in (inbox_read, signals_write, reports_write):
        os.close(end)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    return pid, [inbox, signals, reports], pidfd


def _send(fd: int, data: bytes, deadline: float) -> None:
    while data and time.monotonic() < deadline:
        left = max(deadline - time.monotonic(), 0)
        _, writable, _ = select.select([], [fd], [], left)
        if writable:
            try:
                data = data[os.write(fd, data[:65536]):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child(inbox: int, signals: int, reports: int, workdir: str, sandbox: Any
           ) -> None:
    code = 0
    leave = os._exit  # taken now: student code may replace os._exit
    try:
        from .confinement import name_process

        name_process("submission")
        for handle in sandbox.group_handles if sandbox is not None else ():
            os.write(handle, b"0")  # into the submissions' memory group
        os.setsid()
        _close_other_files(inbox, signals, reports)
        _isolate(workdir, sandbox)
        from . import runtime

        # Taken before the student's code runs, which may replace names in
        # the modules: json, os.write and os._exit, the runtime's helpers.
        # Only this function's frame keeps the sealed ones.
        encode, write, loads = _ENCODE, os.write, _DECODE
        probe_namespace = _SEALED_PROBE
        for name in _SEALED:
            globals().pop(name, None)

        def tell(signal_byte: int) -> None:
            write(signals, bytes((signal_byte,)))

        with os.fdopen(inbox, "rb") as handed_over:
            # Waits here until the submission comes.
            request = loads(handed_over.readline() or b"{}")
            # Every report line is signed with a key that is never written
            # out: student code that reads the runtime's lines (its own
            # pipe put under the report's descriptor) cannot sign others.
            # To forge, it must dig the signer out of the interpreter.
            sign = _signer(request.pop("key", ""))

            def report(kind: str, body: Any) -> None:
                line = encode({"kind": kind, "body": body}).encode()
                data = sign(line) + b" " + line + b"\n"
                while data:
                    written = write(reports, data)
                    data = data[written:]

            _limit(request.get("limits", {}))
            namespace: dict[str, Any] = {"__name__": "__main__",
                                         "__builtins__": __builtins__}
            report("snippets", runtime.run_snippets_in(request["snippets"], namespace))
            tell(_SNIPPETS_RUN)
            functions = loads(handed_over.readline() or b"[]")
            every = {probe["function"]: probe
                     for probe in loads(handed_over.readline() or b"[]")}
        for index, name in enumerate(functions):
            tell(_PROBING + index)
            report("probing", name)
            report("probe", probe_namespace(every[name], namespace))
            tell(_PROBED + index)
    except BaseException:  # noqa: BLE001  (nothing may escape a forked child)
        code = 70
    finally:
        leave(code)


def _signer(key_hex: str) -> Any:
    """HMAC-SHA256 of a line, in hex, from OpenSSL's C objects: their
    methods cannot be replaced from Python, and the key itself is not kept
    (only the hash state after it)."""
    keyed = _hashlib.hmac_new(bytes.fromhex(key_hex), b"", "sha256")
    fresh = keyed.copy

    def sign(line: bytes) -> bytes:
        mac = fresh()
        mac.update(line)
        return mac.hexdigest().encode()

    return sign


def _close_other_files(*kept: int) -> None:
    """The submission gets no handle of the serving process but its pipes
    (a handle on a folder opened before the mounts would reach past them)."""
    low = 3
    for fd in sorted(kept):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _isolate(workdir: str, sandbox: Any) -> None:
    os.chdir(workdir)
    # The serving process ignores SIGINT and the out-of-memory killer;
    # the student's code gets Python's usual handler and no such favour.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _set_oom_score(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sandbox is not None:
        sandbox.confine_child()
    else:
        _block_sockets()


def _limit(limits: dict[str, Any]) -> None:
    """The request's resource limits (lowering needs no privilege)."""
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
