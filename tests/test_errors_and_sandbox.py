"""Student code that fails: each failure gets its own diagnosis, never a pass."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_core.paths import jupyter_runtime_dir

from grader.assignment import Assignment
from grader.executing import ForkEngine, KernelPackage, _launcher_command
from grader.inkernel import limits
from grader.options import GradingOptions
from grader.pipeline import Grader
from tests.harness import (
    diagnosis_ids,
    freqs_body,
    grade_cells,
    grade_freqs_doing,
)

ROOT = Path(__file__).resolve().parent.parent
CONFINED = os.geteuid() == 0 and os.uname().sysname == "Linux"
needs_namespaces = pytest.mark.skipif(
    not CONFINED, reason="namespaces need root on Linux; the weaker mode applies")

GOOD_FREQS = '''
def compute_class_freqs(labels):
    p = np.mean(labels, axis=0)
    return p, 1 - p
'''


@pytest.fixture(scope="module")
def grader(assignment: Assignment) -> Iterator[Grader]:
    options = GradingOptions(case_timeout=1.0, memory_limit_mb=512)
    with Grader(assignment, options) as grader:
        yield grader


@pytest.mark.parametrize("cells, expected", [
    (["def compute_class_freqs(labels):\n    p = np.mean(labels, axis=0)\n"
      "    return p, 1 - p\n"], "function.name_error"),
    (["import numpy as np\nimport util\n",
      freqs_body("p = util.mean(labels)\nreturn p, 1 - p")], "function.import_failed"),
    (["import numpy as np\n", freqs_body("raise ValueError('not done yet')")],
     "function.raised"),
    (["import numpy as np\n", freqs_body("p = np.mean(labels, axis=0)\n"
      "return p[0].numpy(), 1 - p")], "function.numpy_method_on_numpy"),
    (["import numpy as np\n", freqs_body("p = np.mean(labels, axis=0) + np.ones(2)\n"
      "return p, 1 - p")], "function.broadcast_error"),
    (["import numpy as np\n", freqs_body("p = np.mean(labels[:, 0], axis=1)\n"
      "return p, 1 - p")], "function.axis_error"),
    (["import numpy as np\n", freqs_body("while True:\n    pass")], "function.timeout"),
    (["import numpy as np\nimport os\n", freqs_body("os._exit(0)")],
     "function.crashed"),
    (["import numpy as np\nimport sys\n", freqs_body("sys.exit(0)")],
     "function.raised"),
    (["import numpy as np\n", freqs_body("return compute_class_freqs(labels)")],
     "function.raised"),
    (["import numpy as np\n", freqs_body("return np.zeros(2), np.zeros(2)")],
     "function.unrecognised"),
    (["import numpy as np\n", "data = np.load('train.npy')\n",
      freqs_body("p = np.mean(data, axis=0)\nreturn p, 1 - p")],
     "function.uses_global"),
])
def test_failures_are_named(grader: Grader, cells: list[str], expected: str) -> None:
    result = grade_cells(grader, *cells)
    assert diagnosis_ids(result, "compute_class_freqs") == [expected]
    assert result.functions["compute_class_freqs"].score == 0


def test_a_memory_bomb_fails_that_function_only(grader: Grader) -> None:
    bomb = freqs_body("x = bytearray(4 * 1024 ** 3)\nreturn x, x")
    result = grade_cells(grader, "import numpy as np\n", bomb)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    assert "MemoryError" in result.functions["compute_class_freqs"].diagnoses[0].message


def test_an_exception_is_shown_with_the_line_that_raised_it(grader: Grader) -> None:
    raising = freqs_body("count = len(labels)\nraise ValueError('no labels')")
    result = grade_cells(grader, "import numpy as np\n", raising)
    diagnosis = result.functions["compute_class_freqs"].diagnoses[0]
    assert (diagnosis.id, diagnosis.cell, diagnosis.line) == ("function.raised", 2, 3)
    assert diagnosis.message == (
        "`compute_class_freqs` raised ValueError: no labels on the public case "
        "(5 examples, 3 classes). Read the message and the line where it was "
        "raised. See cell 2, line 3.")


def test_an_object_that_claims_equality_gets_no_credit(grader: Grader) -> None:
    liar = '''
class Anything:
    def __eq__(self, other):
        return True
    def __float__(self):
        return 0.8
    def __array__(self, dtype=None, copy=None):
        return np.array([0.8, 0.4, 0.8])

def compute_class_freqs(labels):
    return Anything(), Anything()
'''
    result = grade_cells(grader, "import numpy as np\n", liar)
    function = result.functions["compute_class_freqs"]
    assert [d.id for d in function.diagnoses] == ["function.unrecognised"]
    assert function.score == 0


def test_printing_a_fake_report_changes_nothing(grader: Grader) -> None:
    fake = freqs_body(
        'print(\'{"kind": "probe", "body": {"function": "compute_class_freqs"}}\')\n'
        "return np.zeros(3), np.zeros(3)")
    result = grade_cells(grader, "import numpy as np\n", fake)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.unrecognised"]


def test_a_missing_function_does_not_stop_the_other(grader: Grader) -> None:
    result = grade_cells(grader, "import numpy as np\n", GOOD_FREQS)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert diagnosis_ids(result, "get_weighted_loss") == ["function.missing"]
    assert result.score == 10.0


def test_network_is_blocked_and_protection_is_reported(grader: Grader) -> None:
    dial = freqs_body(
        "import socket\n"
        "socket.create_connection(('127.0.0.1', 9), timeout=0.5)\n"
        "p = np.mean(labels, axis=0)\nreturn p, 1 - p")
    result = grade_cells(grader, "import numpy as np\n", dial)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "OSError" in message or "PermissionError" in message


def test_emptying_the_probe_from_inside_never_passes(grader: Grader) -> None:
    tamper = '''
def _tamper():
    import sys
    for name, module in list(sys.modules.items()):
        if name.endswith("inkernel.runtime"):
            original = module.probe_namespace
            module.probe_namespace = lambda request, namespace: original(
                dict(request, cases=[]), namespace)

def compute_class_freqs(labels, _unused=_tamper()):
    return 0, 0
'''
    result = grade_cells(grader, "import numpy as np\n", tamper)
    # The probe was sealed before the tampering ran: the verdict is the one
    # the same function gets untouched.
    honest = grade_cells(grader, "import numpy as np\n",
                         "def compute_class_freqs(labels):\n    return 0, 0\n")
    expected = ["freqs.integer_division", "freqs.overall_scalar"]
    assert diagnosis_ids(honest, "compute_class_freqs") == expected
    assert diagnosis_ids(result, "compute_class_freqs") == expected
    assert result.functions["compute_class_freqs"].score == \
        honest.functions["compute_class_freqs"].score < 10


def test_a_function_that_kills_its_process_costs_only_its_own_points(
    grader: Grader,
) -> None:
    loss = '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    import os
    os._exit(3)
'''
    result = grade_cells(grader, "import numpy as np\n", GOOD_FREQS, loss)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert diagnosis_ids(result, "get_weighted_loss") == ["function.crashed"]
    assert "exit status 3" in result.functions["get_weighted_loss"].diagnoses[0].message
    assert result.score == 10.0


def test_a_definition_that_raises_is_named_as_such(grader: Grader) -> None:
    broken = "def compute_class_freqs(labels, axis=AXIS):\n    return 1, 1\n"
    result = grade_cells(grader, "import numpy as np\n", broken)
    assert diagnosis_ids(result, "compute_class_freqs") == [
        "function.definition_failed"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "NameError: name 'AXIS' is not defined" in message


def test_graded_functions_defined_by_assignment_are_graded(grader: Grader) -> None:
    cells = ["import numpy as np\n",
             "def _freqs(labels):\n"
             "    p = np.mean(labels, axis=0)\n"
             "    return p, 1 - p\n",
             "compute_class_freqs = _freqs\n"]
    result = grade_cells(grader, *cells)
    assert diagnosis_ids(result, "compute_class_freqs") == []


# The kernel engine (--engine kernel, --full): a Jupyter kernel per
# submission, started by `inkernel.kernel_launcher` in a sandbox of its own.

@pytest.fixture(scope="module")
def kernel_grader(assignment: Assignment) -> Iterator[Grader]:
    options = GradingOptions(engine="kernel", case_timeout=1.0)
    with Grader(assignment, options) as grader:
        yield grader


@needs_namespaces
def test_a_kernel_sees_neither_the_grader_nor_other_processes(
    kernel_grader: Grader,
) -> None:
    grader_pid = os.getpid()
    marker = f"grader-kernel-sleeper-{os.getpid()}"
    check = (
        "import os, subprocess\n"
        f"subprocess.Popen(['sh', '-c', 'exec -a {marker} sleep 300'],"
        " start_new_session=True)\n"
        "pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
        f"assert {grader_pid} not in pids and len(pids) < 6, pids\n"
        "assert os.getppid() == 1, os.getppid()\n"
        "try:\n"
        f"    os.kill({grader_pid}, 0)\n"
        "    raise AssertionError('the grader can be signalled')\n"
        "except ProcessLookupError:\n"
        "    pass\n"
    )
    result = grade_freqs_doing(kernel_grader, check)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    # What the kernel started ends with its PID namespace.
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True,
                               text=True, check=False)
    assert survivors.stdout.strip() == ""


def test_no_kernel_outlives_its_submission(kernel_grader: Grader) -> None:
    grade_cells(kernel_grader, "import numpy as np\n", GOOD_FREQS)
    launchers = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "kernel_launcher"],
        capture_output=True, text=True, check=False)
    assert launchers.stdout.strip() == ""


def connection_files() -> set[Path]:
    """Jupyter connection files (they hold a kernel's signing key) where
    jupyter_client writes them unless told otherwise."""
    found = set()
    for folder in (Path(tempfile.gettempdir()), Path(jupyter_runtime_dir())):
        for path in folder.glob("*.json"):
            try:
                if '"signature_scheme"' in path.read_text(errors="replace")[:4096]:
                    found.add(path)
            except OSError:
                continue
    return found


@needs_namespaces
def test_a_kernel_reads_neither_the_project_nor_other_kernels_keys(
    kernel_grader: Grader, tmp_path: Path,
) -> None:
    decoy = tmp_path / "kernel-of-a-classmate.json"
    decoy.write_text('{"key": "secret", "signature_scheme": "hmac-sha256"}')
    check = (
        "import os\n"
        "from ipykernel.kernelapp import IPKernelApp\n"
        f"assert not os.path.exists({str(ROOT / '.git')!r})\n"
        f"assert not os.path.exists({str(ROOT / 'reference')!r})\n"
        f"assert not os.path.exists({str(decoy)!r})\n"
        "assert [n for n in os.listdir('/tmp') if n.endswith('.json')] == []\n"
        "own = IPKernelApp.instance().abs_connection_file\n"
        "assert os.path.dirname(own) == os.getcwd(), own\n"
        "open('written.txt', 'w').write('the working folder is writable')\n"
    )
    before = connection_files()
    result = grade_freqs_doing(kernel_grader, check)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert connection_files() - before == set()


def test_the_kernel_engine_reports_the_protections_it_applied(
    kernel_grader: Grader,
) -> None:
    check = ("import os\n"
             "assert sorted(os.listdir('/dev')) == "
             "['null', 'random', 'shm', 'urandom', 'zero']\n") if CONFINED else ""
    result = grade_freqs_doing(kernel_grader, check)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert result.protections["engine"] == "kernel"
    confinement = result.protections["confinement"]
    assert "private_workdir" in confinement and "memory_limit" in confinement
    assert "file_size_limit" in confinement
    if CONFINED:
        for protection in ("pid_namespace", "private_proc", "no_network",
                           "read_only_root", "private_tmp", "minimal_dev",
                           "read_only_proc_sys", "no_capabilities", "private_ipc",
                           "system_calls_filtered"):
            assert protection in confinement
        assert ("process_limit=64" in confinement) == limits.available("pids")
        assert ("memory_limit_for_all" in confinement) == limits.available("memory")


def test_a_kernel_writes_no_file_larger_than_the_limit(kernel_grader: Grader) -> None:
    # What a kernel writes lands on the machine's disk.
    code = ("with open('big.bin', 'wb') as out:\n"
            "    out.write(bytes(65 * 1024 * 1024))\n")
    result = grade_freqs_doing(kernel_grader, code)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "File too large" in message


@pytest.mark.skipif(not (CONFINED and limits.available("pids")),
                    reason="no pids control group can be made here")
def test_a_fork_bomb_in_a_kernel_meets_the_process_limit(kernel_grader: Grader) -> None:
    bomb = ("import os, time\n"
            "for _ in range(100):\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(30)\n"
            "        os._exit(0)\n")
    result = grade_freqs_doing(kernel_grader, bomb)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    assert "BlockingIOError" in result.functions["compute_class_freqs"] \
        .diagnoses[0].message


def test_an_interrupted_kernel_goes_on_with_the_next_cell(
    assignment: Assignment,
) -> None:
    # The interrupt must travel launcher -> warden -> kernel: were it lost,
    # the watchdog would kill the kernel and the function would crash.
    options = GradingOptions(engine="kernel", mode="full", cell_timeout=2,
                             case_timeout=1.0)
    started = time.monotonic()
    with Grader(assignment, options) as grader:
        result = grade_cells(grader, "import numpy as np\nimport time\n",
                             "while True:\n    time.sleep(0.01)\n", GOOD_FREQS)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert time.monotonic() - started < 2 * 2 + 10


@pytest.fixture(scope="module")
def package() -> Iterator[KernelPackage]:
    package = KernelPackage()
    yield package
    package.close()


def launch(package: KernelPackage, tmp_path: Path, command: list[str],
           **popen: object) -> tuple[subprocess.Popen[str], Path]:
    """The kernel launcher run on `command` as the kernel engine runs it."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    report = tmp_path / "confinement.json"
    launcher = _launcher_command(GradingOptions(), str(workdir), str(report))
    process = subprocess.Popen(
        launcher + command, cwd=workdir, text=True, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": package.path,
             "JPY_PARENT_PID": str(os.getpid())}, start_new_session=True,
        **popen)  # type: ignore[call-overload]
    return process, report


WAIT_FOR_INTERRUPT = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, lambda *_: sys.exit(5))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


@needs_namespaces
def test_the_launcher_passes_interrupts_on_and_ends_with_the_kernel(
    package: KernelPackage, tmp_path: Path,
) -> None:
    process, report = launch(package, tmp_path,
                             [sys.executable, "-c", WAIT_FOR_INTERRUPT])
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    os.killpg(process.pid, signal.SIGINT)  # as jupyter_client interrupts
    assert process.wait(timeout=10) == 5
    assert "pid_namespace" in json.loads(report.read_text())


@needs_namespaces
def test_killing_the_launcher_ends_everything_in_its_namespace(
    package: KernelPackage, tmp_path: Path,
) -> None:
    marker = f"grader-launcher-sleeper-{os.getpid()}"
    process, _ = launch(package, tmp_path, [
        "/bin/sh", "-c", f"echo ready; exec -a {marker} sleep 300"])
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    os.killpg(process.pid, signal.SIGKILL)  # as the grader's watchdog does
    process.wait(timeout=10)
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True,
                               text=True, check=False)
    assert survivors.stdout.strip() == ""


@needs_namespaces
def test_a_kernel_ends_when_the_grader_that_started_it_dies(
    package: KernelPackage, tmp_path: Path,
) -> None:
    marker = f"grader-orphan-sleeper-{os.getpid()}"
    workdir = tmp_path / "work"
    workdir.mkdir()
    launcher = _launcher_command(GradingOptions(), str(workdir),
                                 str(tmp_path / "confinement.json"))
    command = launcher + ["/bin/sh", "-c", f"echo ready; exec -a {marker} sleep 300"]
    starts_then_waits = (f"import subprocess, time\nsubprocess.Popen({command!r})\n"
                         "time.sleep(300)\n")
    grader = subprocess.Popen(
        [sys.executable, "-c", starts_then_waits],
        cwd=workdir, text=True, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": package.path})
    assert grader.stdout is not None
    assert grader.stdout.readline().strip() == "ready"
    grader.kill()
    grader.wait(timeout=10)
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True,
                               text=True, check=False)
    assert survivors.stdout.strip() == ""


def _without_namespaces() -> None:
    # CAP_SYS_ADMIN out of the bounding set: root, but no namespaces.
    ctypes.CDLL(None).prctl(24, 21, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_ADMIN


def test_without_namespaces_the_kernel_starts_and_says_so(
    package: KernelPackage, tmp_path: Path,
) -> None:
    # ipykernel ends when the PID it is given dies: outside a namespace the
    # kernel keeps that watch, the only one there.
    shows = "import os; print(os.getpid() > 2, os.environ['JPY_PARENT_PID'])"
    process, report = launch(package, tmp_path, [sys.executable, "-c", shows],
                             preexec_fn=_without_namespaces if CONFINED else None)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert output.split() == ["True", str(os.getpid())]
    assert json.loads(report.read_text()) == [
        "private_workdir", "file_size_limit", "memory_limit"]


@pytest.mark.skipif(not (CONFINED and limits.available("pids")),
                    reason="no pids control group can be made here")
def test_no_control_group_outlives_its_kernel(kernel_grader: Grader) -> None:
    grade_freqs_doing(kernel_grader, "")
    parent = limits._own_group("pids")
    assert parent is not None
    left = [name for name in os.listdir(parent)
            if name.startswith("grader-sandbox-")
            and not limits._alive(int(name.removeprefix("grader-sandbox-")))]
    assert left == []


#: Stand-ins for the sandbox: one that takes a request and then ends as the
#: sandbox does when cleaning up after its previous answer failed, and one
#: that answers.
_SANDBOX_READING_THEN_ENDING = """
import json, os, sys
sizes = sys.stdin.buffer.readline().split()
sys.stdin.buffer.read(sum(int(size) for size in sizes))
os._exit(75)
"""
_SANDBOX_ANSWERING = """
import json, sys
sizes = [int(size) for size in sys.stdin.buffer.readline().split()]
plan = json.loads(sys.stdin.buffer.read(sizes[0]))
sys.stdin.buffer.read(sizes[1] + sizes[2])
print(json.dumps({"id": plan["id"], "status": "finished", "runs": []}), flush=True)
"""


def test_a_request_taken_by_a_sandbox_that_could_not_clean_up_goes_to_a_fresh_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.inkernel.zygote import CLEANUP_FAILED

    assert CLEANUP_FAILED == 75
    engine = ForkEngine(KernelPackage(), GradingOptions())
    started = []

    def stand_in() -> subprocess.Popen[bytes]:
        if engine._process is None or engine._process.poll() is not None:
            script = (_SANDBOX_ANSWERING if started else _SANDBOX_READING_THEN_ENDING)
            engine._process = subprocess.Popen([sys.executable, "-c", script],
                                               stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
            engine._owner = os.getpid()
            started.append(engine._process)
        return engine._process

    monkeypatch.setattr(engine, "_zygote", stand_in)
    plan = {"id": "request-1", "probe_plan": [], "timeout": 5}
    try:
        answer = engine._ask(plan, {"snippets": []}, [], timeout=20)
    finally:
        engine.close()
        engine.package.close()
    assert answer == {"id": "request-1", "status": "finished", "runs": []}
    assert len(started) == 2
    assert started[0].returncode == 75


def test_the_template_tells_a_running_child_from_an_ended_one(tmp_path: Path) -> None:
    # Polled where the template got no process handle: "not yet" must not
    # wait for the child, or the sandbox could not end it at its deadline.
    from grader.inkernel.zygote import _Template

    template = _Template.start(None)
    try:
        pid, pipes, pidfd = template.fork(str(tmp_path), None)
        inbox, *others = pipes
        assert template.status(pid, block=False) is None
        os.close(inbox)  # no submission comes: the child leaves with 70
        status = template.status(pid, block=True)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 70
        for handle in others + ([pidfd] if pidfd is not None else []):
            os.close(handle)
    finally:
        template.close()


@needs_namespaces
def test_a_sandbox_without_process_handles_grades_and_ends_children_the_same(
        assignment: Assignment) -> None:
    # Where Linux offers no process handles (pidfd_open), the sandbox forks
    # each child itself and polls it: still every verdict, and a child past
    # its deadline still ended. Its parent tells which way it was forked.
    with Grader(assignment, GradingOptions(case_timeout=1.0)) as grader:
        Path(grader.package.path, "sitecustomize.py").write_text(
            "import os\ndel os.pidfd_open\n", encoding="utf-8")
        forked_by = grade_freqs_doing(grader, "raise ValueError(os.getppid())",
                                      imports="import numpy as np\nimport os\n")
        right = grade_freqs_doing(grader, "")
        started = time.monotonic()
        stuck = grade_freqs_doing(grader, "import time\ntime.sleep(60)")
        took = time.monotonic() - started
    assert "raised ValueError: 1 " in \
        forked_by.functions["compute_class_freqs"].diagnoses[0].message
    assert diagnosis_ids(right, "compute_class_freqs") == []
    assert diagnosis_ids(stuck, "compute_class_freqs") == ["function.timeout"]
    assert took < 30
