"""Confine a sandbox: namespaces, a read-only view of the machine, no caps.

Linux only, and only where the process may create namespaces (root here).
The sandbox gets its own mount, network, PID and IPC namespaces: the root
file system is read-only; every top-level folder but the system's is
covered by an empty file system, the running Python's folders bound back;
/tmp, /dev/shm and /sys are fresh and empty; /dev is read-only and holds
only null, zero, random and urandom; the given folders (the assignment's
reference, the submissions, the grader) are covered too; there is no
network, and no other process is visible. A seccomp filter fails the calls
that reach past namespaces (keyrings, tracing, BPF). Every capability is
then dropped, by the sandbox itself (`confine`, `confine_kernel`) or by
each child it forks (`Sandbox`), so none of this can be undone from inside.
When the namespace's first process ends, Linux ends every process left in
it.

Each step that fails is reported, never hidden: the functions return the
list of protections actually in force.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
MNT_DETACH = 2
PR_CAPBSET_DROP = 24
LINUX_CAPABILITY_VERSION_3 = 0x20080522
DEVICES = ("null", "zero", "random", "urandom")
#: The scratch file systems. Their entries are bounded, hard links
#: included: freeing millions of them takes the sandbox seconds, before
#: the next submission's request is read.
TMP_OPTIONS = "size=256m,nr_inodes=20000,mode=1777"
SHARED_MEMORY_OPTIONS = "size=64m,nr_inodes=1000,mode=1777"
#: The user a submission runs as in the sandbox: it owns nothing there but
#: the submission's working folder.
NOBODY = 65534

_libc = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def name_process(name: str) -> None:
    """The name `ps` and `top` show for this process (15 bytes at most)."""
    try:
        _c().prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (AttributeError, OSError):
        pass  # not Linux: the name stays "python"


def unshare(flags: int) -> bool:
    try:
        return _c().unshare(flags) == 0
    except (OSError, AttributeError):
        return False


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> bool:
    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    return _c().mount(encode(source), encode(target), encode(fstype),
                      flags, encode(data)) == 0


#: Top-level folders that hold the operating system: the only ones left in
#: view. Every other one (/home, /root, /work, /tmp, a CI's checkout under
#: some folder of its own, ...) is covered by an empty file system, except
#: the folders of the running Python (`keep`); /tmp gets a fresh writable one.
SYSTEM_FOLDERS = frozenset({"usr", "bin", "sbin", "lib", "lib32", "lib64",
                            "libx32", "etc", "proc", "sys", "dev"})
#: Files of the operating system that say too much about the machine.
SECRET_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
SECRET_FOLDERS = ("/etc/ssh", "/etc/ssl/private")


def python_folders() -> list[str]:
    """Where this Python, its packages and `grader_inkernel` live: folders
    the sandbox must keep in view.

    Not every sys.path entry: an editable install puts the project's own
    folder there, with its reference and history.
    """
    import site
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = [sys.prefix, sys.base_prefix, *site.getsitepackages(), package]
    # Both spellings: code may reach them through a symbolic link.
    found = [f for f in folders if f and os.path.isdir(f)]
    return sorted(set(found) | {os.path.realpath(f) for f in found})


def roots_to_cover() -> list[str]:
    """Every top-level folder but the system's, /tmp first."""
    names = sorted(entry.name for entry in os.scandir("/")
                   if entry.is_dir(follow_symlinks=False)
                   and entry.name not in SYSTEM_FOLDERS)
    return sorted((f"/{name}" for name in names), key=lambda root: root != "/tmp")


def confine(hidden: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """Called by a `Sandbox`, first process of fresh mount and PID namespaces.

    `keep`: folders that must stay visible, read-only, through the covered
    roots (the Python installation, its packages). Capabilities stay: the
    sandbox needs them to renew /tmp; its children drop them.
    """
    done = []
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return done
    if _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY):
        done.append("read_only_root")
    return done + _cover_roots(keep) + _hide_machine(hidden, own_pids=True)


def _cover_roots(keep: Iterable[str], writable_folder: str = "") -> list[str]:
    """Every top-level folder but the system's covered, the kept folders
    bound back (read-only but for `writable_folder`); a minimal /dev."""
    # Handles opened now still reach the folders once their roots are covered.
    kept = [(folder, os.open(folder, os.O_PATH | os.O_DIRECTORY))
            for folder in sorted(set(keep)) if os.path.isdir(folder)]
    covered = [root for root in roots_to_cover()
               if _cover(root, kept, writable_folder)]
    for _folder, handle in kept:
        os.close(handle)
    if "/tmp" not in covered:
        return [f"covered={len(covered)}"]  # the devices are staged in /tmp
    done = ["private_tmp", f"covered={len(covered)}"]
    os.makedirs("/tmp/.devices", exist_ok=True)
    if _minimal_dev():
        done.append("minimal_dev")
    return done


def _hide_machine(hidden: Iterable[str], own_pids: bool) -> list[str]:
    """/sys, the machine's processes (with `own_pids`), kernel settings,
    secrets and the `hidden` folders out of reach."""
    done = []
    if _mount("tmpfs", "/sys", "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k"):
        done.append("no_sys")
    if own_pids and _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV):
        done.append("private_proc")
    if _protect_kernel_settings():
        done.append("read_only_proc_sys")
    if _hide_secrets():
        done.append("no_secrets")
    return done + [f"hidden_folders={_hide_folders(hidden)}"]


def _hide_folders(hidden: Iterable[str]) -> int:
    """An empty read-only file system over each hidden folder still in view;
    how many were hidden."""
    return sum(
        1 for folder in hidden
        if os.path.isdir(folder)
        and _mount("tmpfs", folder, "tmpfs",
                   MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
    )


class Sandbox:
    """The namespaces' file systems, set up once by their first process,
    which then forks one child per submission.

    Each submission gets a fresh /tmp and /dev/shm, confines itself further
    (`confine_child`), and whatever it leaves running is ended
    before the next one starts. This process keeps its capabilities, so its
    children, which have none, may not trace it; and as the first process
    of the PID namespace it gets from them only the signals it handles:
    none, once it ignores SIGINT.
    """

    def __init__(self, hidden: Iterable[str], keep: Iterable[str]) -> None:
        # Kept folders under /tmp are bound back into each fresh /tmp from
        # handles opened while the machine's /tmp is still in view.
        self._kept_in_tmp = [
            (folder, os.open(folder, os.O_PATH | os.O_DIRECTORY))
            for folder in sorted(set(keep))
            if folder.startswith("/tmp/") and os.path.isdir(folder)
        ]
        # A hidden folder inside a kept one under /tmp (the grader installed
        # in a virtual environment there) comes back with each fresh /tmp.
        hidden = list(hidden)
        self._hidden_in_tmp = [folder for folder in hidden
                               if folder.startswith("/tmp/")]
        # Opened while /proc/sys is writable; it sets the counter of the
        # namespace of whoever writes (this one, and the template's).
        try:
            self._last_pid: int | None = os.open(LAST_PROCESS_NUMBER, os.O_WRONLY)
        except OSError:
            self._last_pid = None
        self._done = confine(hidden, keep)
        if block_system_calls(also=BLOCKED_BETWEEN_SUBMISSIONS):
            self._done.append("system_calls_filtered")
        self._scratch_renewed = True
        # Renewed after the first submission whatever it leaves: setting
        # up left a staging folder in /tmp.
        self._scratch_as_new: dict[str, tuple[int, ...]] | None = None
        #: The number of the last file this process made in each scratch
        #: file system.
        self._last_inode: dict[str, int] = {}
        #: Protections set up outside this class (control groups).
        self.limits: list[str] = []
        #: Handles on the memory groups' process lists, which each
        #: submission's process joins (set up outside this class).
        self.group_handles: list[int] = []
        _c().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def number_processes_afresh(self) -> None:
        """Have the next process made in the namespace take the same number
        as every submission's first: process numbers count on within a
        worker's sandbox, so one submission could otherwise tell the next
        how many processes it started (ten bits and more), by the number
        the next gets. Called before each fork."""
        if self._last_pid is not None:
            # Failing, numbers count on as before: no worse than without.
            with contextlib.suppress(OSError):
                os.pwrite(self._last_pid, b"%d" % FIRST_PROCESS_NUMBER_BEFORE, 0)

    def renew_scratch(self) -> None:
        """Fresh, empty /tmp and /dev/shm: nothing passes between submissions.

        Most submissions leave nothing there (their working folder is
        removed already): the file systems are then exactly as new, and
        replacing them (milliseconds of waiting on the kernel) is skipped.
        """
        if self._scratch_renewed and self._scratch_as_new is not None \
                and _scratch_listing(self._scratch_as_new) == self._scratch_as_new \
                and self._inode_counters_as_left():
            return
        renewed = _unmount("/tmp") and _cover("/tmp", self._kept_in_tmp)
        in_view = [folder for folder in self._hidden_in_tmp if os.path.isdir(folder)]
        renewed = renewed and _hide_folders(in_view) == len(in_view)
        renewed = _unmount("/dev/shm") and _mount(
            "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
            SHARED_MEMORY_OPTIONS) and renewed
        self._scratch_renewed = bool(renewed)
        self._scratch_as_new = _scratch_listing()
        self._inode_counters_as_left()

    def new_workdir(self) -> str:
        """A working folder for the next submission in /tmp, owned by
        nobody (see `confine_child`)."""
        workdir = tempfile.mkdtemp(prefix="submission-", dir="/tmp")
        os.chown(workdir, NOBODY, NOBODY)
        self._last_inode["/tmp"] = os.stat(workdir).st_ino
        return workdir

    def _inode_counters_as_left(self) -> bool:
        """Whether no file was made in /tmp or /dev/shm since this process
        last made one there, even one removed since: a file system numbers
        the files it makes in order, so the next one's number would tell
        the next submission how many the last one made."""
        unchanged = True
        for root in SCRATCH:
            try:
                probe = os.open(f"{root}/.next", os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                                0o600)
            except OSError:
                unchanged = False
                continue
            number = os.fstat(probe).st_ino
            os.close(probe)
            os.unlink(f"{root}/.next")
            last = self._last_inode.get(root)
            unchanged = unchanged and last is not None and number == last + 1
            self._last_inode[root] = number
        return unchanged

    def end_leftovers(self, spare: Iterable[int] = (),
                      reap: Callable[[], None] | None = None) -> None:
        """End every other process of the namespace but `spare`, and reap
        what comes to this process (the namespace's first, which inherits
        every orphan); `reap` has the spared reap theirs."""
        if not spare:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while True:
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    return
        kept = {os.getpid(), *spare}
        # Killed, a process starts no other; one started meanwhile is
        # found on the next round. The process limit bounds the rounds.
        for _round in range(1000):
            others = [int(name) for name in os.listdir("/proc")
                      if name.isdigit() and int(name) not in kept]
            if not others:
                return
            for pid in others:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            _reap_orphans()
            if reap is not None:
                reap()
            time.sleep(0.0002)

    @staticmethod
    def confine_child() -> None:
        """In each child, before the submission's code: shared memory and
        message queues of its own (gone with it), and a network namespace
        of its own, whose counters (/proc/net/snmp: packets sent, routes
        missing, ...) the next submission would otherwise read, an exact
        channel between them (about 0.6 ms of kernel time); then no
        capabilities and the user `nobody`, so that it cannot signal or
        read the root processes that serve it."""
        if not unshare(CLONE_NEWIPC | CLONE_NEWNET):
            raise OSError("no IPC and network namespaces for the submission")
        drop_capabilities(user=NOBODY)

    def protections(self) -> list[str]:
        """What holds for a submission: the sandbox's own, then its child's."""
        done = list(self._done) + ["no_capabilities"]
        if self._last_pid is not None:
            done.append("process_numbers_afresh")
        if self._scratch_renewed:
            done.append("fresh_tmp_per_submission")
        return done + self.limits + ["private_ipc", "private_network",
                                     "unprivileged_user"]


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


#: The PID namespace's counter (Linux 3.3+): the number after it goes to
#: the next process. The sandbox is 1 and the template 2.
LAST_PROCESS_NUMBER = "/proc/sys/kernel/ns_last_pid"
FIRST_PROCESS_NUMBER_BEFORE = 100

#: The scratch file systems a submission can write to.
SCRATCH = ("/tmp", "/dev/shm")


def _scratch_listing(
    expected: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, tuple[int, ...]] | None:
    """Every entry of the scratch file systems with its inode, type and
    permissions, owner and size; down to, not into, what is mounted there
    (kept and hidden folders). Given what is `expected`, None as soon as an
    entry differs: a submission that left a million files is not listed."""
    found: dict[str, tuple[int, ...]] = {}
    for root in SCRATCH:
        try:
            device = os.stat(root).st_dev
        except OSError:
            continue
        folders = [root]
        while folders:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    facts = entry.stat(follow_symlinks=False)
                    found[entry.path] = (facts.st_ino, facts.st_mode, facts.st_uid,
                                         facts.st_size)
                    if expected is not None \
                            and expected.get(entry.path) != found[entry.path]:
                        return None
                    if entry.is_dir(follow_symlinks=False) and facts.st_dev == device:
                        folders.append(entry.path)
    return found


def _unmount(target: str) -> bool:
    return _c().umount2(target.encode(), MNT_DETACH) == 0


def _cover(root: str, kept: list[tuple[str, int]], writable_folder: str = ""
           ) -> bool:
    """An empty file system over `root`, with the kept folders bound back.

    Kept folders come back read-only, except `writable_folder`.
    """
    writable = root == "/tmp"
    options = TMP_OPTIONS if writable else "size=1m,mode=755"
    if not _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, options):
        return False
    for folder, handle in kept:
        if folder == root or folder.startswith(root + "/"):
            os.makedirs(folder, exist_ok=True)
            if _mount(f"/proc/self/fd/{handle}", folder, None, MS_BIND | MS_REC) \
                    and folder != writable_folder:
                _mount(None, folder, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    if not writable:
        _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return True


def _hide_secrets() -> bool:
    ok = True
    for path in SECRET_FILES:
        if os.path.isfile(path):
            ok = _mount("/dev/null", path, None, MS_BIND) and ok
    for path in SECRET_FOLDERS:
        if os.path.isdir(path):
            ok = _mount("tmpfs", path, "tmpfs",
                        MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k") and ok
    return ok


def _minimal_dev() -> bool:
    # Keep the harmless devices reachable through /tmp while /dev is covered.
    staged = []
    for name in DEVICES:
        stage = f"/tmp/.devices/{name}"
        open(stage, "w").close()
        if _mount(f"/dev/{name}", stage, None, MS_BIND):
            staged.append(name)
    if not _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=755"):
        return False
    for name in staged:
        target = f"/dev/{name}"
        open(target, "w").close()
        _mount(f"/tmp/.devices/{name}", target, None, MS_BIND)
    os.makedirs("/dev/shm", exist_ok=True)
    # /dev itself read-only: only /dev/shm, renewed per submission, takes files.
    _mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, SHARED_MEMORY_OPTIONS)
    return len(staged) == len(DEVICES)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities(user: int | None = None) -> bool:
    """No capability now or ever after; with `user`, that user's ids."""
    libc = _c()
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    if user is not None:
        # While the capabilities to change ids are still in effect.
        os.setgroups([])
        os.setresgid(user, user, user)
        os.setresuid(user, user, user)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    return libc.capset(ctypes.byref(header), data) == 0


def confine_kernel(hidden: Iterable[str], workdir: str, keep: Iterable[str] = (),
                   own_pids: bool = False) -> list[str]:
    """`confine` for a Jupyter kernel, called before its command runs.

    The kernel's working folder holds its connection file and the Unix
    sockets it serves: it is the one kept folder bound back writable.
    `own_pids`: the caller is the first process of a fresh PID namespace,
    whose own /proc replaces the machine's.
    """
    done = []
    if not unshare(CLONE_NEWNS | CLONE_NEWNET):
        return done
    done.append("no_network")
    if unshare(CLONE_NEWIPC):
        done.append("private_ipc")
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return done
    # A mount of its own made while the root is writable: bound back into
    # the covered /tmp, it stays writable.
    workdir_mounted = _mount(workdir, workdir, None, MS_BIND | MS_REC)
    if workdir_mounted and _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY):
        done.append("read_only_root")
    if workdir_mounted:
        done += _cover_roots(set(keep) | {workdir}, writable_folder=workdir)
        # The current folder still points into the read-only root.
        os.chdir(workdir)
    done += _hide_machine(hidden, own_pids)
    if block_system_calls():
        done.append("system_calls_filtered")
    if drop_capabilities():
        done.append("no_capabilities")
    return done


#: System calls no graded code needs and a hostile one could use outside
#: the namespaces: the kernel keyrings (shared by every process of the
#: user, across namespaces), tracing, BPF programs, performance counters,
#: userfaultfd and io_uring. And the machine's page cache, which outlives
#: every submission: dropping a system file from it (fadvise) and asking
#: how much is cached (cachestat) would pass bits to later submissions.
BLOCKED_SYSTEM_CALLS = (
    "add_key", "request_key", "keyctl", "ptrace", "process_vm_readv",
    "process_vm_writev", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "acct", "swapon", "swapoff", "reboot",
    "fadvise64", "fadvise64_64", "cachestat",
)

#: Calls blocked only with a flag: (call, argument, flag).
BLOCKED_WITH_FLAG = (
    # Asking whether a read would wait (RWF_NOWAIT) tells what is cached;
    # without flags these are how Python's os.preadv and os.pwritev read
    # and write.
    ("preadv2", 5, 0x8), ("pwritev2", 5, 0x8),
    # CLONE_PARENT: the new process would be the child of whoever forked
    # the submission's, which reaps only the one it forked; ended, it
    # would stay as a zombie for every later submission, holding a process
    # slot and a name of 15 bytes anyone can read.
    ("clone", 0, 0x8000),
    # CLONE_NEWUSER: a user namespace of its own, in which the submission
    # would hold every capability (mounts among them): kernel code no
    # graded function needs.
    ("clone", 0, 0x10000000), ("unshare", 0, 0x10000000),
)

#: clone3 passes its flags in memory, where a filter cannot look: it is
#: answered "not implemented", and the C library then creates threads and
#: processes with clone, whose flags the filter sees.
UNIMPLEMENTED_SYSTEM_CALLS = ("clone3",)


class _ArgumentTest(ctypes.Structure):
    """libseccomp's scmp_arg_cmp."""

    _fields_ = [("argument", ctypes.c_uint), ("test", ctypes.c_int),
                ("mask", ctypes.c_uint64), ("value", ctypes.c_uint64)]


_MASKED_EQUAL = 7  # SCMP_CMP_MASKED_EQ


#: Also blocked where one process serves submission after submission:
#: binding names a socket in the network namespace they all share, which
#: the next submission would find (an abstract Unix socket's name can
#: carry any message). Kernels serve Jupyter on sockets they bind.
BLOCKED_BETWEEN_SUBMISSIONS = ("bind",)


def block_system_calls(also: tuple[str, ...] = ()) -> bool:
    """A seccomp filter, through libseccomp, that fails those calls (and
    `also`) with EPERM for this process and every process it starts;
    False where the library or the kernel offers none."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return False
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                     ctypes.c_uint]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                           ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgumentTest)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    allow, fail_with_eperm = 0x7FFF0000, 0x00050000 | 1
    fail_with_enosys = 0x00050000 | 38
    context = lib.seccomp_init(allow)
    if not context:
        return False
    try:
        for name in BLOCKED_SYSTEM_CALLS + also:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0 and lib.seccomp_rule_add(
                    context, fail_with_eperm, number, 0):
                return False
        for name in UNIMPLEMENTED_SYSTEM_CALLS:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0 and lib.seccomp_rule_add(
                    context, fail_with_enosys, number, 0):
                return False
        for name, argument, flag in BLOCKED_WITH_FLAG:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            test = _ArgumentTest(argument, _MASKED_EQUAL, flag, flag)
            if number >= 0 and lib.seccomp_rule_add_array(
                    context, fail_with_eperm, number, 1, ctypes.byref(test)):
                return False
        return lib.seccomp_load(context) == 0
    finally:
        lib.seccomp_release(context)


def _protect_kernel_settings() -> bool:
    """/proc/sys read-only and /proc/sysrq-trigger inert.

    Root without capabilities may still write some kernel settings, and one
    of them (kernel.core_pattern) makes the kernel run a program as full root
    outside every namespace.
    """
    ok = _mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC) and _mount(
        None, "/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    if os.path.exists("/proc/sysrq-trigger"):
        ok = _mount("/dev/null", "/proc/sysrq-trigger", None, MS_BIND) and ok
    return ok
