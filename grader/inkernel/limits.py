"""Limits on a whole sandbox, not one process: Linux control groups.

Resource limits (setrlimit) bound each process alone, so a submission that
forks many processes could use many times the memory limit, and as root it
is not bound by RLIMIT_NPROC at all. A control group counts every process
of the sandbox together: at most `PROCESS_LIMIT` processes, and the memory
limit for all of them. The sandbox grades one submission at a time, so the
group's limits are that submission's.

Groups are made under the ones this process is already in, for the pids and
memory controllers of cgroup v1 or of a unified v2 hierarchy mounted at
/sys/fs/cgroup. Where they cannot be made (no permission, no controller),
nothing is limited this way and the protections say so by omission.
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"
#: Processes one submission may have at once, its own first process included.
PROCESS_LIMIT = 64
#: What the sandbox's first process adds to the submission's memory limit.
SANDBOX_MEMORY = 64 * 2**20


class SandboxGroups:
    """The control groups of one sandbox, named after the process that
    made them, which also removes them when the sandbox has ended."""

    def __init__(self, memory_bytes: int) -> None:
        self.folders: list[str] = []
        self.controllers: list[str] = []
        self.protections: list[str] = []
        self._parents: list[tuple[int, str]] = []
        name = f"grader-sandbox-{os.getpid()}"
        for controller, settings, said in (
            ("pids", {"pids.max": PROCESS_LIMIT}, f"process_limit={PROCESS_LIMIT}"),
            ("memory", _memory_settings(memory_bytes), "memory_limit_for_all"),
        ):
            if not settings:
                continue
            folder = _make(controller, name, settings)
            if folder is not None:
                self.folders.append(folder)
                self.controllers.append(controller)
                self.protections.append(said)

    def join(self, controllers: tuple[str, ...] = ("pids", "memory")) -> list[str]:
        """Put the calling process, and so all it starts, in the groups of
        `controllers`; the protections that hold afterwards."""
        joined = []
        for folder, said in self._groups_of(controllers):
            try:
                with open(os.path.join(folder, "cgroup.procs"), "w") as procs:
                    procs.write(str(os.getpid()))
                joined.append(said)
            except OSError:
                pass
        return joined

    def open_for_children(self, controller: str) -> tuple[list[int], list[str]]:
        """Handles on the `controller` groups' process lists, opened while
        /sys is in view, for children to join by writing "0" there; and
        the protections that then hold for them."""
        handles, said = [], []
        for folder, protection in self._groups_of((controller,)):
            try:
                handles.append(os.open(os.path.join(folder, "cgroup.procs"),
                                       os.O_WRONLY | os.O_CLOEXEC))
                said.append(protection)
            except OSError:
                pass
        return handles, said

    def _groups_of(self, controllers: tuple[str, ...]) -> list[tuple[str, str]]:
        """Folder and protection of each group made for `controllers`."""
        return [(folder, said) for folder, controller, said
                in zip(self.folders, self.controllers, self.protections, strict=True)
                if controller in controllers]

    def keep_reach(self) -> None:
        """Hold on to the groups' parent folders, for `remove` to work after
        the sandbox has covered /sys in the mounts this process shares."""
        self._parents = [(os.open(os.path.dirname(folder), os.O_PATH | os.O_DIRECTORY),
                          os.path.basename(folder)) for folder in self.folders]

    def let_go(self) -> None:
        for handle, _name in self._parents:
            os.close(handle)
        self._parents = []

    def remove(self) -> None:
        """Remove the groups, through the parents' handles if kept."""
        places = self._parents or [(None, folder) for folder in self.folders]
        for handle, name in places:
            try:
                os.rmdir(name, dir_fd=handle)
            except OSError:
                pass  # still in use; `tidy` or the next sandbox's retries
        self.let_go()


def available(controller: str) -> bool:
    """Whether groups of `controller` ("pids", "memory") can be made here."""
    folder = _own_group(controller)
    return folder is not None and os.access(folder, os.W_OK)


def _memory_settings(memory_bytes: int) -> dict[str, int]:
    if memory_bytes <= 0:
        return {}
    limit = memory_bytes + SANDBOX_MEMORY
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return {"memory.max": limit, "memory.swap.max": 0}
    return {"memory.limit_in_bytes": limit}


def _make(controller: str, name: str, settings: dict[str, int]) -> str | None:
    parent = _own_group(controller)
    if parent is None:
        return None
    _tidy(parent)
    folder = os.path.join(parent, name)
    try:
        os.makedirs(folder, exist_ok=True)
        for setting, value in settings.items():
            path = os.path.join(folder, setting)
            if os.path.exists(path):
                with open(path, "w") as control:
                    control.write(str(value))
            elif setting != "memory.swap.max":  # optional where there is no swap
                raise OSError(f"{setting} missing")
    except OSError:
        try:
            os.rmdir(folder)
        except OSError:
            pass
        return None
    return folder


def _own_group(controller: str) -> str | None:
    """The folder of the group this process is in, for `controller`."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as groups:
            lines = groups.read().splitlines()
    except OSError:
        return None
    unified = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if unified and controllers == "":
            folder = CGROUP_ROOT + path
        elif controller in controllers.split(","):
            folder = os.path.join(CGROUP_ROOT, controller) + path
        else:
            continue
        folder = folder.rstrip("/") or "/"
        if os.path.exists(os.path.join(folder, "cgroup.procs")):
            return folder
    return None


def tidy() -> None:
    """Remove the groups of ended sandboxes made beside this process's own:
    a kernel's launcher is killed when its kernel is shut down, before it
    can remove its groups."""
    for controller in ("pids", "memory"):
        parent = _own_group(controller)
        if parent is not None:
            _tidy(parent)


def _tidy(parent: str) -> None:
    """Remove the groups of sandboxes that were killed before removing them.

    Only those whose maker has ended: a group just made by a sandbox still
    starting is empty too, and must stay.
    """
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        maker = name.removeprefix("grader-sandbox-")
        if maker == name or not maker.isdigit() or _alive(int(maker)):
            continue
        try:
            os.rmdir(os.path.join(parent, name))
        except OSError:
            pass  # still has processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
