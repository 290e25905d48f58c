"""Start a Jupyter kernel in a PID namespace of its own, confined.

The kernel engine runs this in place of the kernel's command:

    python -m grader_inkernel.kernel_launcher CONFIG -- KERNEL COMMAND...

Three processes, one job each:

* the launcher (the process jupyter_client started and signals): creates
  the PID namespace, then waits, passing on the signals that interrupt
  or end a kernel, and ends the namespace if the grader dies;
* the warden, first process of the namespace: confines it
  (`confine_kernel`), starts the kernel, passes signals on, reaps orphans
  and ends with the kernel. It dies with the launcher, and when it ends
  Linux ends every process left in the namespace: killing the launcher's
  process group, as jupyter_client and the grader's watchdog do, ends all;
* the kernel, an ordinary process. It is not the namespace's first
  process because that one ignores every signal it has no handler for,
  and a kernel has none for SIGTERM.

Where PID namespaces are not allowed, the launcher confines itself as far
as it can and becomes the kernel. Either way the protections in force are
written, as a JSON list, to the report file named in CONFIG: a file
opened before confinement, out of the kernel's sight.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
from collections.abc import Callable
from typing import Any

from .confinement import (
    CLONE_NEWPID,
    PR_SET_DUMPABLE,
    PR_SET_PDEATHSIG,
    _c,
    confine_kernel,
    python_folders,
    unshare,
)
from .limits import SandboxGroups

#: Signals jupyter_client and the grader send to end or interrupt a kernel.
PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: Variable meant for the launcher, not for the kernel.
LAUNCHER_VARIABLE = "PYTHONPATH"
#: The grader's PID, which ipykernel watches to end with it. From inside a
#: PID namespace the kernel's parent is the warden, PID 1, which ipykernel
#: takes for "my parent died": there the launcher watches instead.
PARENT_VARIABLE = "JPY_PARENT_PID"


def main(argv: list[str]) -> None:
    split = argv.index("--")
    config = json.loads(argv[1])
    command = argv[split + 1:]
    limits = _limit_resources(int(config.get("memory_bytes", 0)))
    report = os.open(config["report"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
    confine = _confiner(config)
    if not unshare(CLONE_NEWPID):
        _write_report(report, confine(False) + limits)
        _exec_kernel(command, (LAUNCHER_VARIABLE,))
    # Control groups for the whole namespace, made and removed here, where
    # /sys stays in view; the warden joins them before it confines itself.
    groups = SandboxGroups(int(config.get("group_memory_bytes", 0)))
    # The launcher's end must end the warden: a pipe it alone holds open
    # tells the warden if the launcher died before the warden could ask
    # Linux to kill it then.
    launcher_alive, holding = os.pipe()
    warden = os.fork()
    if warden == 0:
        os.close(holding)
        _warden(command, confine, report, limits + groups.join(), launcher_alive)
    os.close(report)
    os.close(launcher_alive)
    _pass_on_signals(lambda signum: os.kill(warden, signum))
    status = _wait_for(warden)
    groups.remove()
    sys.exit(_exit_code(status))


def _wait_for(warden: int) -> int:
    """The warden's wait status. Should the grader die first, the warden is
    killed, as a kernel ends on its own when its parent goes."""
    try:
        grader = os.pidfd_open(os.getppid())
        ended = os.pidfd_open(warden)
    except (AttributeError, OSError):  # no process handles: no such watch
        return os.waitpid(warden, 0)[1]
    if grader in select.select([grader, ended], [], [])[0]:
        os.kill(warden, signal.SIGKILL)
    return os.waitpid(warden, 0)[1]


def _confiner(config: dict[str, Any]) -> Callable[[bool], list[str]]:
    hidden = [str(path) for path in config.get("hidden", [])]
    workdir = str(config["workdir"])
    keep = python_folders()

    def confine(own_pids: bool) -> list[str]:
        return ["private_workdir"] + confine_kernel(hidden, workdir, keep, own_pids)

    return confine


#: The largest file a kernel may write: what it writes lands on the
#: machine's disk, in its working folder.
FILE_BYTES = 64 * 1024 * 1024


def _limit_resources(memory: int) -> list[str]:
    done = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
        done.append("file_size_limit")
        if memory:  # none for TensorFlow, which maps gigabytes it never uses
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            done.append("memory_limit")
    except (ValueError, OSError):  # a platform that refuses the limit
        pass
    return done


def _warden(command: list[str], confine: Callable[[bool], list[str]],
            report: int, limits: list[str], launcher_alive: int) -> None:
    code = 70
    try:
        _c().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if select.select([launcher_alive], [], [], 0)[0]:
            os._exit(code)  # the launcher is gone already
        # A session of its own: a signal sent from inside to a whole
        # process group never reaches the launcher.
        os.setsid()
        done = ["pid_namespace"] + confine(True)
        # Not traceable by the kernel, which could otherwise make the warden
        # outlive the launcher, and the namespace with it.
        _c().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        _write_report(report, done + limits)
        kernel = os.fork()
        if kernel == 0:
            os.setpgid(0, 0)
            _exec_kernel(command, (LAUNCHER_VARIABLE, PARENT_VARIABLE))
        _set_group(kernel)
        _pass_on_signals(lambda signum: _signal_group(kernel, signum))
        while True:
            pid, status = os.wait()  # orphans of the namespace land here too
            if pid == kernel:
                code = _exit_code(status)
                break
    finally:
        os._exit(code)


def _write_report(report: int, protections: list[str]) -> None:
    os.write(report, json.dumps(protections).encode())
    os.close(report)


def _exec_kernel(command: list[str], dropped: tuple[str, ...]) -> None:
    environment = {key: value for key, value in os.environ.items()
                   if key not in dropped}
    try:
        os.execve(command[0], command, environment)
    finally:
        os._exit(127)


def _set_group(kernel: int) -> None:
    # Also done by the kernel itself: whichever runs first, a signal passed
    # on finds the kernel's group.
    try:
        os.setpgid(kernel, kernel)
    except OSError:
        pass


def _signal_group(kernel: int, signum: int) -> None:
    """The kernel and what it started in its group, as jupyter_client would."""
    try:
        os.killpg(kernel, signum)
    except OSError:
        try:
            os.kill(kernel, signum)
        except OSError:
            pass


def _pass_on_signals(send: Callable[[int], None]) -> None:
    def handler(signum: int, _frame: Any) -> None:
        try:
            send(signum)
        except OSError:
            pass

    for signum in PASSED_ON:
        signal.signal(signum, handler)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    main(sys.argv)
