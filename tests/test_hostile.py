"""Hostile submissions: they cannot read the reference, change the machine,
outlive grading or reach the grader. Each test grades one notebook in a
batch run through the CLI's pipeline (fork engine, confined sandbox)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.assignment import Assignment
from grader.inkernel import limits
from grader.options import GradingOptions
from grader.pipeline import Grader
from tests.harness import (
    diagnosis_ids,
    freqs_body,
    freqs_doing,
    grade_cells,
    grade_freqs_doing,
)

CONFINED = os.geteuid() == 0 and os.uname().sysname == "Linux"
needs_namespaces = pytest.mark.skipif(
    not CONFINED, reason="namespaces need root on Linux; the weaker mode applies")


@pytest.fixture(scope="module")
def grader(assignment: Assignment, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Grader]:
    outside = tmp_path_factory.mktemp("outside")
    options = GradingOptions(case_timeout=1.0, hidden_paths=(str(outside),))
    with Grader(assignment, options) as grader:
        grader.outside = outside  # type: ignore[attr-defined]
        yield grader


def numpy_loss(returning: str = "loss", first: str = "") -> str:
    """A get_weighted_loss computed in NumPy: right values, not a tensor.
    `first` runs before the inner function is made; `returning` is what it
    returns, built from `loss`."""
    start = f"    {first}\n" if first else ""
    return ("def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):\n"
            + start
            + "    def weighted_loss(y_true, y_pred):\n"
            "        loss = 0.0\n"
            "        for i in range(len(pos_weights)):\n"
            "            loss -= np.mean(pos_weights[i] * y_true[:, i]"
            " * np.log(y_pred[:, i] + epsilon)\n"
            "                + neg_weights[i] * (1 - y_true[:, i])"
            " * np.log(1 - y_pred[:, i] + epsilon))\n"
            f"        return {returning}\n"
            "    return weighted_loss\n")


@needs_namespaces
def test_the_reference_is_out_of_reach(grader: Grader, assignment: Assignment) -> None:
    model = assignment.root / "model.py"
    result = grade_cells(grader, "import numpy as np\n",
                         freqs_doing(f"open({str(model)!r}).read()"))
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    assert "FileNotFoundError" in result.functions["compute_class_freqs"] \
        .diagnoses[0].message


@needs_namespaces
def test_no_file_outside_the_sandbox_changes(grader: Grader, tmp_path: Path) -> None:
    target = Path(__file__).resolve().parent.parent / "ESCAPE_MARKER.txt"
    result = grade_cells(grader, "import numpy as np\n",
                         freqs_doing(f"open({str(target)!r}, 'w').write('x')"))
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    # Read-only; or, when the project itself sits under /tmp, not there, or
    # there only as the root-owned parent of a virtual environment kept in
    # view, which the submission (nobody) may not write to.
    assert any(reason in message for reason in
               ("Read-only file system", "No such file", "Permission denied"))
    assert not target.exists()


@needs_namespaces
def test_submissions_of_others_are_hidden(grader: Grader) -> None:
    victim = grader.outside / "classmate.ipynb"  # type: ignore[attr-defined]
    victim.write_text("{}", encoding="utf-8")
    result = grade_cells(grader, "import numpy as np\nimport os\n",
                         freqs_doing(f"assert not os.path.exists({str(victim)!r})"))
    assert diagnosis_ids(result, "compute_class_freqs") == []


@needs_namespaces
def test_no_process_outlives_grading_and_the_grader_is_invisible(
    grader: Grader, tmp_path: Path
) -> None:
    # A sleep of a length nothing else uses marks the submission's process;
    # it must have started (poll() is None) for the test to mean anything.
    # The test run's own number in it: two runs on one machine stay apart.
    marker = f"sleep 4242.{os.getpid()}"
    code = (
        "import subprocess, os\n"
        f"sleeper = subprocess.Popen({marker.split()!r}, start_new_session=True)\n"
        "assert sleeper.poll() is None\n"
        # Its namespace's number, the same for every submission.
        "assert os.getpid() == 101, os.getpid()\n"
        "assert len([p for p in os.listdir('/proc') if p.isdigit()]) < 10\n"
    )
    result = grade_freqs_doing(grader, code)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    time.sleep(0.3)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert survivors.stdout.strip() == ""


def test_a_fork_bomb_is_ended_with_the_submission(grader: Grader) -> None:
    code = (
        "import os, time\n"
        "for _ in range(100):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(300)\n"
        "        os._exit(0)\n"
    )
    result = grade_freqs_doing(grader, code)
    if not (CONFINED and limits.available("pids")):
        assert diagnosis_ids(result, "compute_class_freqs") == []
        return
    # The sandbox's control group allows 64 processes in all.
    assert "process_limit=64" in result.protections["confinement"]
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "BlockingIOError" in message
    # The sleepers were ended with it: the next submission may fork again.
    forking = ("import os\nfor _ in range(40):\n    pid = os.fork()\n"
               "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n")
    after = grade_freqs_doing(grader, forking)
    assert diagnosis_ids(after, "compute_class_freqs") == []


def test_killing_its_parent_does_not_hurt_the_batch(grader: Grader) -> None:
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    grade_freqs_doing(grader, code)
    after = grade_freqs_doing(grader, "")
    assert diagnosis_ids(after, "compute_class_freqs") == []


def test_the_confinement_in_force_is_reported(grader: Grader) -> None:
    result = grade_freqs_doing(grader, "")
    confinement = result.protections["confinement"]
    if CONFINED:
        for protection in ("read_only_root", "private_tmp", "private_proc",
                           "no_capabilities", "resource_limits"):
            assert protection in confinement
    else:
        assert confinement == ["private_workdir", "sockets_blocked",
                               "resource_limits"]


def test_a_class_that_calls_itself_a_tensorflow_tensor_is_not_one(
    grader: Grader,
) -> None:
    forged = '''
class EagerTensor:
    def __init__(self, value):
        self.value = value
    def numpy(self):
        return np.float32(self.value)
EagerTensor.__module__ = "tensorflow.python.framework.ops"

''' + numpy_loss(returning="EagerTensor(loss)")
    result = grade_cells(grader, "import numpy as np\n", forged)
    assert diagnosis_ids(result, "get_weighted_loss") == ["function.unrecognised"]


def test_the_kernel_engine_stops_a_loop_that_ignores_interrupts(
    assignment: Assignment,
) -> None:
    stubborn = freqs_doing(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    pass")
    options = GradingOptions(engine="kernel", case_timeout=1.0)
    started = time.monotonic()
    with Grader(assignment, options) as grader:
        result = grade_cells(grader, "import numpy as np\n", stubborn)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.timeout"]
    assert time.monotonic() - started < 120


@needs_namespaces
def test_the_kernel_engine_has_no_network(assignment: Assignment) -> None:
    dial = freqs_doing("import socket\nsocket.create_connection(('127.0.0.1', 9), 1)")
    with Grader(assignment, GradingOptions(engine="kernel")) as grader:
        result = grade_cells(grader, "import numpy as np\n", dial)
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "Network is unreachable" in message


LOSS_OK = '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss -= K.mean(pos_weights[i] * y_true[:, i]
                           * K.log(y_pred[:, i] + epsilon)
                           + neg_weights[i] * (1 - y_true[:, i])
                           * K.log(1 - y_pred[:, i] + epsilon))
        return loss
    return weighted_loss
'''


@pytest.mark.parametrize("code, expected", [
    ("import ctypes\nctypes.string_at(0)", "function.crashed"),
    ("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 50_000)",
     None),
    ("np.allclose = lambda *a, **k: True\nnp.isclose = np.allclose\n"
     "np.testing.assert_allclose = lambda *a, **k: None\n"
     "return np.zeros(3), np.ones(3)",
     "function.unrecognised"),
    ("import sys\nsys.setrecursionlimit(10**8)\ndef down(n):\n    return down(n + 1)\n"
     "down(0)", "function.timeout"),
    ("return np.empty(2**30 - 2**20, dtype=np.uint8), np.zeros(3)",
     "function.unrecognised"),
    ("import atexit\natexit.register(lambda: open('/tmp/after', 'w'))\n"
     "class Later:\n    def __del__(self):\n        print('late')\n"
     "globals()['keep'] = Later()", None),
], ids=["segfault", "100MB_prints", "numpy_monkeypatch", "deep_recursion",
        "gigabyte_result", "atexit_and_del"])
def test_hostile_code_gets_its_verdict_and_the_other_function_its_points(
    grader: Grader, code: str, expected: str | None
) -> None:
    imports = "import numpy as np\nfrom keras import backend as K\n"
    result = grade_cells(grader, imports, freqs_doing(code), LOSS_OK)
    assert diagnosis_ids(result, "compute_class_freqs") == ([expected] if expected
                                                            else [])
    assert diagnosis_ids(result, "get_weighted_loss") == []


def test_fifty_megabytes_of_image_outputs_are_read(tmp_path: Path) -> None:
    import json

    from tests.conftest import SAMPLES

    content = json.loads((SAMPLES / "correct_keras_backend.ipynb").read_text())
    picture = "A" * (5 * 2**20)
    for cell in content["cells"][:10]:
        cell.setdefault("outputs", []).append(
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": picture}}) if cell["cell_type"] == "code" else None
    big = tmp_path / "big.ipynb"
    big.write_text(json.dumps(content), encoding="utf-8")
    assert big.stat().st_size > 20 * 2**20
    from grader.reading import read_notebook
    assert len(read_notebook(big).code_cells) > 5


@needs_namespaces
def test_no_installed_copy_of_the_reference_is_reachable(grader: Grader) -> None:
    code = (
        "import glob, os, numpy, site\n"
        "roots = site.getsitepackages() + [os.path.dirname(os.path.dirname("
        "numpy.__file__))]\n"
        "found = [p for r in roots\n"
        "         for p in glob.glob(r + '/*/_reference/*/model.py')]\n"
        "for home in ('/work', '/home', '/root', '/srv', '/opt'):\n"
        "    found += glob.glob(home + '/**/reference/*/model.py', recursive=True)\n"
        "assert found == [], found\n"
    )
    result = grade_freqs_doing(grader, code)
    assert diagnosis_ids(result, "compute_class_freqs") == []


@needs_namespaces
def test_kernel_settings_cannot_be_changed(grader: Grader) -> None:
    code = "open('/proc/sys/kernel/core_pattern', 'w').write('|/bin/true')\n"
    result = grade_freqs_doing(grader, code)
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "Read-only file system" in message or "Permission denied" in message
    with open("/proc/sys/kernel/core_pattern", encoding="utf-8") as pattern:
        assert not pattern.read().startswith("|/bin/true")


@needs_namespaces
def test_the_project_history_is_out_of_reach(grader: Grader) -> None:
    root = Path(__file__).resolve().parent.parent
    code = f"assert not os.path.exists({str(root / '.git')!r})\n"
    result = grade_cells(grader, "import numpy as np\nimport os\n", freqs_doing(code))
    assert diagnosis_ids(result, "compute_class_freqs") == []


def test_a_kernel_that_exits_during_probing_fails_fast(assignment: Assignment) -> None:
    started = time.monotonic()
    options = GradingOptions(engine="kernel", case_timeout=1.0)
    with Grader(assignment, options) as grader:
        result = grade_cells(grader, "import numpy as np\nimport os\n",
                             freqs_doing("os._exit(0)"))
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.crashed"]
    assert time.monotonic() - started < 60


@needs_namespaces
def test_nothing_passes_from_one_submission_to_the_next(grader: Grader) -> None:
    # One sandbox serves many submissions: files in /tmp and /dev/shm and
    # processes left running must not reach the next one. In view: the
    # sandbox (1, the submission's parent) and the submission.
    leaving = (
        "import os, time\n"
        "open('/tmp/left_behind', 'w').write('x')\n"
        "open('/dev/shm/left_behind', 'w').write('x')\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(300)\n"
    )
    grade_freqs_doing(grader, leaving)
    checking = (
        "import os\n"
        "assert not os.path.exists('/tmp/left_behind')\n"
        "assert not os.path.exists('/dev/shm/left_behind')\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit()\n"
        "          and int(p) not in (1, os.getppid(), os.getpid())]\n"
        "assert others == [], others\n"
    )
    result = grade_freqs_doing(grader, checking)
    assert diagnosis_ids(result, "compute_class_freqs") == []


@needs_namespaces
def test_the_sandbox_outlives_signals_from_a_submission(grader: Grader) -> None:
    attack = (
        "import os, signal\n"
        "for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):\n"
        "    os.kill(1, sig)\n"
        "    os.kill(os.getppid(), sig)\n"
    )
    grade_freqs_doing(grader, "pass")
    sandbox = grader.fork_engine._process
    first = grade_freqs_doing(grader, attack)
    assert "fresh_tmp_per_submission" in first.protections["confinement"]
    second = grade_freqs_doing(grader, "pass")
    assert diagnosis_ids(second, "compute_class_freqs") == []
    # Answered by the same sandbox, not by one started again.
    assert grader.fork_engine._process is sandbox
    assert sandbox is not None and sandbox.poll() is None


@needs_namespaces
@pytest.mark.skipif(not limits.available("memory"),
                    reason="no memory control group can be made here")
def test_memory_is_limited_for_all_the_processes_together(
    assignment: Assignment
) -> None:
    # Each process stays under the per-process limit (256 MB here);
    # together they are over it, and only the control group sees the sum.
    code = (
        "import os, time\n"
        "import numpy as _np\n"
        "children = []\n"
        "for _ in range(3):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = _np.ones(200 * 2**20 // 8)\n"
        "        time.sleep(1)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "ends = [os.waitpid(pid, 0)[1] for pid in children]\n"
        "assert all(os.WIFEXITED(end) for end in ends), ends\n"
    )
    options = GradingOptions(case_timeout=10.0, memory_limit_mb=256)
    with Grader(assignment, options) as grader:
        result = grade_freqs_doing(grader, code)
        after = grade_freqs_doing(grader, "")
    assert "memory_limit_for_all" in result.protections["confinement"]
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.raised"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "AssertionError" in message
    assert diagnosis_ids(after, "compute_class_freqs") == []


LOSS_IN_NUMPY_CLAIMING_A_TENSOR = '''
def tell_lies():
    import sys, json
    runtime = sys.modules["grader_inkernel.runtime"]
    seen_as = runtime._observe

    def claims_a_tensor(value, depth):
        seen = seen_as(value, depth)
        if seen.get("kind") in ("numpy_scalar", "ndarray"):
            seen["kind"], seen["type"] = "tensor", "keras.Tensor"
        return seen

    runtime._observe = claims_a_tensor
    dumps = json.dumps
    json.dumps = lambda value, **options: dumps(value, **options).replace(
        '"numpy_scalar"', '"tensor"')
    iterencode = json.JSONEncoder.iterencode
    def rewritten(self, o, _one_shot=False):
        text = "".join(iterencode(self, o, _one_shot))
        return [text.replace('"numpy_scalar"', '"tensor"')]
    json.JSONEncoder.iterencode = rewritten

''' + numpy_loss(first="tell_lies()")


@needs_namespaces
def test_replacing_the_probe_helpers_does_not_change_the_verdict(
        grader: Grader) -> None:
    result = grade_cells(grader, "import numpy as np\n", freqs_doing(""),
                         LOSS_IN_NUMPY_CLAIMING_A_TENSOR)
    assert diagnosis_ids(result, "get_weighted_loss") == ["loss.numpy_result"]
    assert result.functions["get_weighted_loss"].score == 8.0


@needs_namespaces
def test_shared_memory_devices_and_keyrings_stay_with_the_submission(
    grader: Grader
) -> None:
    key = 0x5EED0 + os.getpid() % 1000
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"shmid = libc.shmget({key}, 4096, 0o1666)\n"
        "assert shmid >= 0, ctypes.get_errno()\n"
        "try:\n"
        "    open('/dev/left_behind', 'w')\n"
        "    raise AssertionError('/dev took a file')\n"
        "except OSError as exc:\n"
        "    assert 'Read-only' in str(exc), exc\n"
        "SYS_add_key = 248 if os.uname().machine == 'x86_64' else 217\n"
        "done = libc.syscall(SYS_add_key, b'user', b'grader', b'x', 1, -4)\n"
        "assert done == -1 and ctypes.get_errno() == 1, (done, ctypes.get_errno())\n"
    )
    result = grade_freqs_doing(grader, code)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert {"private_ipc", "system_calls_filtered"} <= set(
        result.protections["confinement"])
    looking = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"assert libc.shmget({key}, 0, 0) == -1, 'the segment is still there'\n"
    )
    after = grade_freqs_doing(grader, looking)
    assert diagnosis_ids(after, "compute_class_freqs") == []
    # The segment went with the submission's IPC namespace: not on the machine.
    with open("/proc/sysvipc/shm", encoding="utf-8") as segments:
        keys = [int(line.split()[0]) for line in segments.readlines()[1:]]
    assert key not in keys


@needs_namespaces
def test_the_page_cache_can_be_neither_emptied_nor_asked(grader: Grader) -> None:
    # It outlives every submission: evicting chosen system files and later
    # asking which are cached would carry bits from one to the next.
    code = (
        "import os\n"
        "fd = os.open('/etc/passwd', os.O_RDONLY)\n"
        "for attempt in (\n"
        "        lambda: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED),\n"
        "        lambda: os.preadv(fd, [bytearray(64)], 0, os.RWF_NOWAIT)):\n"
        "    try:\n"
        "        attempt()\n"
        "        raise AssertionError('allowed')\n"
        "    except PermissionError:\n"
        "        pass\n"
        "# Without the flag, as Python reads with os.preadv:\n"
        "assert os.preadv(fd, [bytearray(4)], 0) == 4\n"
        "os.close(fd)\n"
    )
    result = grade_freqs_doing(grader, code)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert "system_calls_filtered" in result.protections["confinement"]


@needs_namespaces
def test_the_sealed_helpers_are_out_of_the_submissions_reach(grader: Grader) -> None:
    # The sandbox runs as `python -m ...zygote`: its module is
    # sys.modules["__main__"], whose sealed encoder, decoder and probe a
    # submission could otherwise change (an instance attribute on the
    # encoder, the probe's private globals) and have its lines signed.
    code = ("import sys\n"
            "main = sys.modules['__main__']\n"
            "found = [n for n in ('_ENCODE', '_DECODE', '_SEALED_PROBE')\n"
            "         if hasattr(main, n)]\n"
            "raise ValueError(f'found {found}')\n")
    result = grade_freqs_doing(grader, code)
    assert "ValueError: found []" in \
        result.functions["compute_class_freqs"].diagnoses[0].message


@needs_namespaces
def test_changing_jsons_defaults_changes_nothing_the_child_reads_or_writes(
        grader: Grader) -> None:
    # json's class-level separators and decoder are anyone's to change, at
    # definition time (a default value), before the probes are read.
    changing_json = ("def _change_json():\n"
                     "    import json\n"
                     "    json.JSONEncoder.key_separator = '='\n"
                     "    json.JSONDecoder.decode = lambda self, text, *rest: []\n")
    loss = numpy_loss(returning="np.float32(loss)").replace(
        "epsilon=1e-7)", "epsilon=1e-7, _changed=_change_json())", 1)
    result = grade_cells(grader, "import numpy as np\n", freqs_doing(""),
                         changing_json + loss)
    assert diagnosis_ids(result, "compute_class_freqs") == []
    assert diagnosis_ids(result, "get_weighted_loss") == ["loss.numpy_result"]


LOSS_FORGING_ITS_REPORT = '''
def forge():
    import json, os
    fake = {"kind": "probe", "body": {"function": "get_weighted_loss", "found": True,
            "callable": True, "cases": [], "output": {"text": "", "chars": 0}}}
    # Every descriptor it holds: which number the report pipe has depends
    # on how many the sandbox had open (kept folders, a virtual env).
    for fd in range(3, 1024):
        try:
            os.write(fd, (json.dumps(fake) + "\\n").encode())
        except OSError:
            pass

def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        forge()
        return K.mean(y_pred)
    return weighted_loss
'''

LOSS_REPLACING_TYPE_AND_THE_ENCODER = '''
def fake(value):
    import builtins, json, sys
    real_type = getattr(builtins, "_real_type", builtins.type)
    builtins._real_type = real_type
    tensor = next(m.Tensor for n, m in list(sys.modules.items())
                  if n.endswith("legacy_backend"))
    class Fake:
        pass
    f = Fake()
    f._array = np.asarray(value)
    builtins.type = lambda *a: tensor if len(a) == 1 and a[0].__class__ is Fake \\
        else real_type(*a)
    real = json.JSONEncoder.iterencode
    def rewritten(self, o, _one_shot=False):
        text = "".join(real(self, o, _one_shot))
        return [text.replace('"numpy_scalar"', '"tensor"')]
    json.JSONEncoder.iterencode = rewritten
    return f

''' + numpy_loss(returning="fake(loss)")


@needs_namespaces
def test_a_report_written_by_the_submission_voids_its_results(grader: Grader) -> None:
    imports = "import numpy as np\nfrom keras import backend as K\n"
    result = grade_cells(grader, imports, freqs_doing(""), LOSS_FORGING_ITS_REPORT)
    for name in ("compute_class_freqs", "get_weighted_loss"):
        assert diagnosis_ids(result, name) == ["function.crashed"]
        message = result.functions[name].diagnoses[0].message
        assert "report channel" in message
        assert message.endswith("Remove code that writes to files or pipes it did "
                                "not open.")
    assert result.score == 0


@needs_namespaces
def test_replacing_builtins_or_the_json_encoder_does_not_change_the_type(
    grader: Grader
) -> None:
    result = grade_cells(grader, "import numpy as np\n", freqs_doing(""),
                         LOSS_REPLACING_TYPE_AND_THE_ENCODER)
    # Seen for what it is: an object that is neither a tensor nor a number.
    assert diagnosis_ids(result, "get_weighted_loss") == ["function.unrecognised"]
    assert result.functions["get_weighted_loss"].score == 0


#: Sets up a sandbox in fresh namespaces, renews its /tmp as before each
#: submission, and prints what is left in a folder it was told to hide.
_RENEWED_SANDBOX = """
import json, os, sys
from grader.inkernel.confinement import (
    CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, Sandbox, unshare)
kept, hidden = sys.argv[1], sys.argv[2]
assert unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET)
pid = os.fork()
if pid == 0:
    sandbox = Sandbox([hidden], keep=[kept])
    sandbox.renew_scratch()
    print(json.dumps([os.listdir(hidden), "fresh_tmp_per_submission"
                      in sandbox.protections()]), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@needs_namespaces
def test_a_hidden_folder_inside_a_kept_one_stays_hidden_in_each_fresh_tmp(
        tmp_path: Path) -> None:
    # The grader installed in a virtual environment under /tmp: the
    # environment is kept in view, the grader inside it is hidden.
    kept = tmp_path / "venv"
    hidden = kept / "site-packages" / "grader"
    hidden.mkdir(parents=True)
    (hidden / "model.py").write_text("REFERENCE = 1\n")
    assert str(tmp_path).startswith("/tmp/")
    shown = subprocess.run(
        [sys.executable, "-c", _RENEWED_SANDBOX, str(kept), str(hidden)],
        capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(shown.stdout) == [[], True]


#: The child's two pipes to the sandbox, found as student code would:
#: the writable ones, progress bytes first, then reports.
_CHILD_PIPES = (
    "import os, stat, fcntl\n"
    "pipes = []\n"
    "for fd in range(3, 64):\n"
    "    try:\n"
    "        if stat.S_ISFIFO(os.fstat(fd).st_mode) and \\\n"
    "                fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_WRONLY:\n"
    "            pipes.append(fd)\n"
    "    except OSError:\n"
    "        pass\n"
)


#: At definition time, before the runtime reports anything, the student's
#: code speaks the whole protocol itself: progress bytes, the cases read
#: from the child's inbox, and reports in the right order, where a NumPy
#: loss that changes its input claims to be a tensor that does not.
LOSS_TAKING_OVER_THE_PROTOCOL = """
import fcntl, json, os, stat, sys

def _take_over(function):
    pipes = [fd for fd in range(3, 64) if _is_pipe(fd)]
    inbox = next(fd for fd in pipes if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_WRONLY)
    progress, reports = [fd for fd in pipes if fd != inbox]
    def line():
        read = b""
        while not read.endswith(b"\\n"):
            read += os.read(inbox, 1)
        return json.loads(read)
    def report(kind, body):
        os.write(reports, (json.dumps({"kind": kind, "body": body}) + "\\n").encode())
    namespace = function.__globals__
    namespace[function.__name__] = function
    os.write(progress, bytes([1]))
    functions = line()
    probes = {probe["function"]: probe for probe in line()}
    runtime = next(m for n, m in list(sys.modules.items()) if n.endswith(".runtime"))
    report("snippets", {"statuses": [], "output": {"text": "", "chars": 0}})
    for index, name in enumerate(functions):
        os.write(progress, bytes([0x10 + index]))
        report("probing", name)
        body = runtime.probe_namespace(probes[name], namespace)
        for case in body["cases"]:
            result = case.get("result") or {}
            if result.get("kind") == "numpy_scalar":
                result["kind"] = "tensor"
            case["mutated"] = []
        report("probe", body)
        os.write(progress, bytes([0x40 + index]))
    os._exit(0)

def _is_pipe(fd):
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False

@_take_over
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss += -np.mean(pos_weights[i] * y_true[:, i]
                             * np.log(y_pred[:, i] + epsilon)
                             + neg_weights[i] * (1 - y_true[:, i])
                             * np.log(1 - y_pred[:, i] + epsilon))
        y_true[0, 0] = 0.5
        return np.float32(loss)
    return weighted_loss
"""


@needs_namespaces
def test_reports_forged_in_order_without_the_runtime_void_the_results(
        grader: Grader) -> None:
    result = grade_cells(grader, "import numpy as np\n", freqs_doing(""),
                         LOSS_TAKING_OVER_THE_PROTOCOL)
    for name in ("compute_class_freqs", "get_weighted_loss"):
        assert diagnosis_ids(result, name) == ["function.crashed"]
        assert "report channel" in result.functions[name].diagnoses[0].message
    assert result.score == 0


#: No frame walking: the submission puts a pipe of its own under the
#: report pipe's number, so the runtime's lines pass through a helper that
#: rewrites them (its `compute_class_freqs` changes its input; the line
#: says it does not) before they reach the sandbox. The loss waits until
#: the rewritten line is through, so the sandbox reads it. The helper sees
#: every signature but cannot sign what it changed.
RELAYING_THE_RUNTIMES_REPORTS = """
import fcntl, json, os, select, stat

def _relay():
    writers = [fd for fd in range(3, 64) if _writes_to_pipe(fd)]
    reports = sorted(writers)[1]
    sandbox = os.dup(reports)
    read_end, write_end = os.pipe()
    done_read, done_write = os.pipe()
    if os.fork() == 0:
        os.close(write_end)
        pending = b""
        while chunk := os.read(read_end, 1 << 16):
            pending += chunk
            while b"\\n" in pending:
                line, pending = pending.split(b"\\n", 1)
                start = line.index(b"{")
                signature, report = line[:start], json.loads(line[start:])
                if report["kind"] == "probe":
                    for case in report["body"]["cases"]:
                        case["mutated"] = []
                text = json.dumps(report).encode()
                os.write(sandbox, signature + text + b"\\n")
                if report["kind"] == "probe":
                    os.write(done_write, b"!")
        os._exit(0)
    os.dup2(write_end, reports)
    os.close(write_end)
    return done_read

def _writes_to_pipe(fd):
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode) and \\
            fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    except OSError:
        return False

def compute_class_freqs(labels, _relayed=_relay()):
    p = labels.mean(axis=0)
    labels[0, 0] = 1 - labels[0, 0]
    return p, 1 - p

def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7,
                      _through=compute_class_freqs.__defaults__[0]):
    select.select([_through], [], [], 5)
    return lambda y_true, y_pred: 0.0
"""


@needs_namespaces
def test_runtime_reports_rewritten_in_passing_void_the_results(
        grader: Grader) -> None:
    result = grade_cells(grader, "import numpy as np\n",
                         RELAYING_THE_RUNTIMES_REPORTS)
    for name in ("compute_class_freqs", "get_weighted_loss"):
        assert diagnosis_ids(result, name) == ["function.crashed"]
        assert "report channel" in result.functions[name].diagnoses[0].message
    assert result.score == 0


@needs_namespaces
def test_no_socket_name_passes_to_the_next_submission(grader: Grader) -> None:
    # An abstract Unix socket, kept alive by a message that carries it, is
    # seen by name in /proc/net/unix by whoever runs next.
    naming = (
        "import array, socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.bind('\\0student-a-says-hello')\n"
        "s.sendmsg([b'.'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,\n"
        "          array.array('i', [s.fileno()]))], 0, '\\0student-a-says-hello')\n"
    )
    first = grade_freqs_doing(grader, naming)
    message = first.functions["compute_class_freqs"].diagnoses[0].message
    assert "PermissionError" in message
    looking = (
        "names = [line.split()[-1] for line in open('/proc/net/unix')]\n"
        "assert not any('student-a' in name for name in names), names\n"
    )
    after = grade_freqs_doing(grader, looking)
    assert diagnosis_ids(after, "compute_class_freqs") == []


@needs_namespaces
def test_a_working_folder_too_deep_to_remove_spoils_nothing(grader: Grader) -> None:
    deep = "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
    first = grade_freqs_doing(grader, deep)
    sandbox = grader.fork_engine._process
    after = grade_freqs_doing(grader, "import os\nassert os.listdir('.') == []")
    assert diagnosis_ids(first, "compute_class_freqs") == []
    assert diagnosis_ids(after, "compute_class_freqs") == []
    # The same sandbox: its /tmp was replaced, it did not die.
    assert grader.fork_engine._process is sandbox


@needs_namespaces
def test_progress_claimed_by_the_submission_voids_its_results(grader: Grader) -> None:
    # "Snippets run" once more, while the function is being probed: out of
    # turn, whoever wrote it.
    result = grade_freqs_doing(grader, _CHILD_PIPES + "os.write(pipes[0], bytes([1]))")
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.crashed"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "report channel" in message
    assert result.score == 0


@needs_namespaces
def test_a_flood_of_reports_is_cut_off_at_the_cap(grader: Grader) -> None:
    flooding = _CHILD_PIPES + (
        "line = b'{}' + b' ' * 65000 + b'\\n'\n"
        "for _ in range(200):  # 13 MB, past the 8 MB taken from a child\n"
        "    os.write(pipes[1], line)\n"
    )
    started = time.monotonic()
    result = grade_freqs_doing(grader, flooding)
    # Ended as soon as the cap is passed, not at the deadline.
    assert time.monotonic() - started < 20
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.crashed"]
    assert "more data than allowed" in \
        result.functions["compute_class_freqs"].diagnoses[0].message
    assert result.score == 0


@needs_namespaces
def test_scratch_file_systems_take_a_bounded_number_of_entries(
        grader: Grader) -> None:
    # Hard links count: millions of them would take the sandbox seconds to
    # free before the next submission.
    code = ("import os\n"
            "made = {}\n"
            "for root in (os.getcwd(), '/dev/shm'):\n"
            "    open(f'{root}/a', 'w').close()\n"
            "    made[root] = 0\n"
            "    try:\n"
            "        while True:\n"
            "            os.link(f'{root}/a', f'{root}/l{made[root]}')\n"
            "            made[root] += 1\n"
            "    except OSError as exc:\n"
            "        made[root] = (made[root], exc.strerror)\n"
            "raise ValueError(sorted(made.values()))\n")
    result = grade_freqs_doing(grader, code)
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    counts = re.search(r"\[\((\d+), 'No space left on device'\), "
                       r"\((\d+), 'No space left on device'\)\]", message)
    assert counts is not None, message
    # A few entries of each are taken already (its root, the working folder).
    assert 990 <= int(counts.group(1)) < 1000
    assert 19_990 <= int(counts.group(2)) < 20_000


def test_a_working_folder_of_many_links_is_left_for_tmp_to_be_replaced(
        tmp_path: Path) -> None:
    # Removing a million links one by one takes seconds, spent before the
    # next submission is read; replacing /tmp takes a fraction of that.
    from grader.inkernel.zygote import _Child

    class Sandbox:
        def end_leftovers(self, spare: tuple[int, ...], reap: object) -> None:
            pass

    class Template:
        spare = ()

        def reap_strays(self) -> None:
            pass

    for links, kept in ((9_999, False), (10_000, True)):
        folder = tmp_path / f"submission-{links}"
        folder.mkdir()
        (folder / "a").touch()
        for number in range(links):
            os.link(folder / "a", folder / f"link{number}")
        pipes = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
        _Child(0, pipes, None, str(folder), Sandbox(), Template())._close()
        assert folder.exists() == kept


def test_a_folder_is_small_up_to_its_limit_of_entries(tmp_path: Path) -> None:
    from grader.inkernel.zygote import _small

    (tmp_path / "deep" / "deeper").mkdir(parents=True)
    for number in range(8):
        (tmp_path / "deep" / "deeper" / f"{number}").touch()
    assert _small(str(tmp_path), most=10)  # two folders and eight files
    (tmp_path / "deep" / "one_more").touch()
    assert not _small(str(tmp_path), most=10)


#: A sandbox in fresh namespaces, renewing its scratch file systems as
#: after each submission: left clean, the same /tmp serves on; anything
#: left in /tmp or /dev/shm, or made there at all, is gone.
_SCRATCH_AFTER_SUBMISSIONS = """
import json, os
from grader.inkernel.confinement import (
    CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, Sandbox, unshare)
assert unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET)
pid = os.fork()
if pid == 0:
    sandbox = Sandbox([], keep=[])
    sandbox.renew_scratch()  # the first time, always
    seen = []
    def renewed(leave):
        # A mark no submission can make (the mount's root is root's): a
        # fresh file system comes without it.
        for root in ("/tmp", "/dev/shm"):
            os.setxattr(root, "trusted.grader_test", b"1")
        leave()
        sandbox.renew_scratch()
        marked = [root for root in ("/tmp", "/dev/shm")
                  if "trusted.grader_test" in os.listxattr(root)]
        seen.append([marked, os.listdir("/tmp"), os.listdir("/dev/shm")])
    def working_folder(files):
        folder = sandbox.new_workdir()
        for number in range(files):  # made and removed again
            open(f"{folder}/{number}", "w").close()
            os.remove(f"{folder}/{number}")
        os.rmdir(folder)
    renewed(lambda: working_folder(0))
    renewed(lambda: working_folder(3))
    renewed(lambda: open("/tmp/left_behind", "w").write("x"))
    renewed(lambda: open("/dev/shm/left_behind", "w").write("x"))
    renewed(lambda: os.makedirs("/tmp/a/b/c/d"))
    print(json.dumps(seen), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@needs_namespaces
def test_scratch_is_renewed_only_when_a_submission_left_something() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", _SCRATCH_AFTER_SUBMISSIONS],
        capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(shown.stdout) == [
        # Its working folder removed, nothing was left: kept as it is.
        [["/tmp", "/dev/shm"], [], []],
        # Files made and removed: the next file's number would tell how many.
        [[], [], []],
        [[], [], []],
        [[], [], []],
        [[], [], []],
    ]


def _memory_hits(*needles: tuple[str, ...]) -> str:
    """A `compute_class_freqs` that, when defined, counts where each needle
    lies in its own process's memory, and raises the counts. Each needle is
    given in parts, joined only at run time, so that the code's own text
    never holds it; the bytes object that holds it is left out of the count."""
    parts = ", ".join("(" + ", ".join(repr(p.encode()) for p in needle) + ",)"
                      for needle in needles)
    return (
        "import ctypes\n"
        "def _hits(parts):\n"
        "    needle = b''.join(parts)\n"
        "    own = id(needle) + 32  # where a bytes object keeps its data\n"
        "    regions = open('/proc/self/maps').read().splitlines()\n"
        "    hits = 0\n"
        "    for region in regions:\n"
        "        fields = region.split()\n"
        "        if not fields[1].startswith('rw') or region.endswith(']') \\\n"
        "                and not region.endswith(('[heap]', '[stack]')):\n"
        "            continue\n"
        "        start, end = (int(x, 16) for x in fields[0].split('-'))\n"
        "        data = ctypes.string_at(start, end - start)\n"
        "        at = data.find(needle)\n"
        "        while at != -1:\n"
        "            hits += start + at != own\n"
        "            at = data.find(needle, at + 1)\n"
        "    return hits\n"
        f"def compute_class_freqs(labels, _hits=[_hits(p) for p in ({parts},)]):\n"
        "    raise ValueError(f'hits {_hits}')\n"
    )


@needs_namespaces
def test_a_submission_finds_no_hidden_input_and_no_other_submission_in_memory(
        grader: Grader, assignment: Assignment) -> None:
    # The first student prints a mark and leaves a comment; the next one
    # searches its whole memory for them and for a hidden case, before it
    # is probed. A needle nobody sent is the control: it counts the scan's
    # own copies of the needle, if any.
    first = freqs_body("print('LEFT' + 'OVER-' + 'MARK')\n"
                       "p = labels.mean(axis=0)  # first-student-secret\n"
                       "return p, 1 - p")
    grade_cells(grader, "import numpy as np\n", first)
    hidden = next(case.id for case in assignment.cases_for("compute_class_freqs")
                  if not case.public)
    result = grade_cells(grader, "import numpy as np\n", _memory_hits(
        ("LEFTOVER", "-MARK"), ("first-student", "-secret"),
        (hidden[:6], hidden[6:]), ("never-", "sent-anywhere")))
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "ValueError: hits [0, 0, 0, 0]" in message, message


@needs_namespaces
def test_how_a_submission_ended_does_not_reach_the_next_in_memory(
        grader: Grader) -> None:
    # The sandbox learns how many bytes a child reported and how it ended;
    # the next child must not inherit that knowledge.
    ending = freqs_doing(_CHILD_PIPES + (
        "os.write(pipes[1], b'x' * 54321)\n"
        "os._exit(42)"))
    first = grade_cells(grader, "import numpy as np\n", ending)
    message = first.functions["compute_class_freqs"].diagnoses[0].message
    assert "exit status 42" in message
    result = grade_cells(grader, "import numpy as np\n", _memory_hits(
        ("54", "321"), ("exit st", "atus 42"), ("never-", "sent-anywhere")))
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "ValueError: hits [0, 0, 0]" in message, message


def test_public_evidence_quotes_nothing_a_hidden_case_gave(
        assignment: Assignment) -> None:
    # Feedback that students read (Gradescope) must not carry the hidden
    # inputs out, whether in an exception's message or in a returned value;
    # instructors' own reports (the default) quote both.
    raising = freqs_body("if labels.shape[0] != 5:\n"
                         "    raise ValueError('LEAK' + repr(labels.tolist()))\n"
                         "p = labels.mean(axis=0)\nreturn p, 1 - p")
    # The class name is the submission's to choose, too.
    naming = freqs_body("if labels.shape[0] != 5:\n"
                        "    raise type('LEAK' + str(labels.sum()),\n"
                        "               (Exception,), {})()\n"
                        "p = labels.mean(axis=0)\nreturn p, 1 - p")
    exiting = freqs_body("import os\n"
                         "if labels.shape[0] != 5:\n"
                         "    os._exit(int(labels.sum()))\n"
                         "p = labels.mean(axis=0)\nreturn p, 1 - p")
    returning = freqs_body("p = labels.mean(axis=0)\n"
                           "if labels.shape[0] != 5:\n"
                           "    return labels.sum(axis=0) * 1001.0, p\n"
                           "return p, 1 - p")
    messages = {}
    for public_evidence in (False, True):
        options = GradingOptions(public_evidence=public_evidence)
        with Grader(assignment, options) as grader:
            for name, code in (("raising", raising), ("returning", returning),
                               ("naming", naming), ("exiting", exiting)):
                result = grade_cells(grader, "import numpy as np\n", code)
                diagnosis, = result.functions["compute_class_freqs"].diagnoses
                messages[name, public_evidence] = (diagnosis.id, diagnosis.message)
    # The hidden case with 7 examples: its first column sums to 4.
    assert messages["raising", False][0] == "function.raised"
    assert "LEAK[[1, 0, 1, 0]" in messages["raising", False][1]
    assert messages["returning", False][0] == "function.unrecognised"
    assert "4004" in messages["returning", False][1]
    assert messages["raising", True][0] == "function.raised"
    assert "LEAK" not in messages["raising", True][1]
    assert "raised ValueError on a hidden case" in messages["raising", True][1]
    assert messages["returning", True][0] == "function.unrecognised"
    assert "4004" not in messages["returning", True][1]
    assert "the values of hidden cases are not shown" in messages["returning", True][1]
    # The hidden case with 7 examples holds 14 ones.
    assert "LEAK14" in messages["naming", False][1]
    assert "LEAK" not in messages["naming", True][1]
    assert "raised an exception on a hidden case" in messages["naming", True][1]
    assert messages["exiting", False][0] == "function.crashed"
    assert "exit status 14" in messages["exiting", False][1]
    assert messages["exiting", True][0] == "function.crashed"
    assert "exit status" not in messages["exiting", True][1]


@needs_namespaces
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL],
                         ids=["told", "killed"])
def test_a_stopped_sandbox_ends_every_process_in_it(
        assignment: Assignment, stop: signal.Signals) -> None:
    # The grader stops a sandbox that does not answer in time: nothing the
    # submission started may go on running once it is stopped, however.
    marker = f"sleep 4243.{int(stop)}{os.getpid()}"
    code = (f"import subprocess\n"
            f"subprocess.Popen({marker.split()!r})\n"
            "while True:\n"
            "    try:\n"
            "        pass\n"
            "    except BaseException:\n"
            "        pass\n")
    with Grader(assignment, GradingOptions(case_timeout=1.0)) as grader:
        grade_freqs_doing(grader, "pass")  # the sandbox is up
        sandbox = grader.fork_engine._process
        assert sandbox is not None
        grading = threading.Thread(target=grade_freqs_doing, args=(grader, code))
        grading.start()

        def running() -> bool:
            found = subprocess.run(["pgrep", "-f", marker], capture_output=True)
            return found.returncode == 0

        deadline = time.monotonic() + 20
        while not running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running()
        os.kill(sandbox.pid, stop)
        deadline = time.monotonic() + 5
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running()
        grading.join(timeout=60)
    if stop == signal.SIGTERM and limits.available("pids"):
        assert not any(Path(limits.CGROUP_ROOT).rglob(f"grader-sandbox-{sandbox.pid}"))


def test_public_evidence_comes_from_a_process_without_hidden_inputs(
        assignment: Assignment) -> None:
    # The first function keeps every input it is given; the second raises
    # them on its public case, which is quoted. Under public evidence the
    # public cases run in a process that never held a hidden one; the
    # frames of the probe hold public cases only, too.
    keeping = ("SEEN = []\n"
               + freqs_body("SEEN.append(labels.tolist())\n"
                            "p = labels.mean(axis=0)\nreturn p, 1 - p"))
    telling = (
        "import sys\n"
        "def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):\n"
        "    def weighted_loss(y_true, y_pred):\n"
        "        frame, held = sys._getframe(), []\n"
        "        while frame is not None:\n"
        "            held.append(repr(frame.f_locals.get('every')))\n"
        "            frame = frame.f_back\n"
        "        raise ValueError('LEAK' + repr(SEEN) + ''.join(held))\n"
        "    return weighted_loss\n")
    with Grader(assignment, GradingOptions(public_evidence=True)) as grader:
        result = grade_cells(grader, "import numpy as np\n", keeping, telling)
    message = result.functions["get_weighted_loss"].diagnoses[0].message
    assert "LEAK[[[1, 0, 0]" in message  # the public labels, quoted
    hidden = [case for case in assignment.cases if not case.public]
    assert hidden
    for case in hidden:
        assert case.id not in message
    assert "[1, 0, 1, 0]" not in message  # the first hidden labels' first row


@needs_namespaces
@pytest.mark.skipif(not (CONFINED and limits.available("memory")),
                    reason="no memory control group can be made here")
def test_memory_that_outlives_a_process_never_costs_the_sandbox(
        assignment: Assignment) -> None:
    # Files in /tmp are memory charged to whoever wrote them, and stay
    # when the writer dies: the out-of-memory killer must find only the
    # submission's processes in the group, never the sandbox's.
    code = ("chunk = b'x' * 2**20\n"
            "for i in range(250):\n"
            "    with open(f'/tmp/fill{i}', 'wb') as out:\n"
            "        out.write(chunk)\n")
    options = GradingOptions(case_timeout=10.0, memory_limit_mb=128)
    with Grader(assignment, options) as grader:
        grade_freqs_doing(grader, "")
        sandbox = grader.fork_engine._process
        filled = grade_freqs_doing(grader, code)
        after = grade_freqs_doing(grader, "")
        assert grader.fork_engine._process is sandbox  # not started again
    assert "oom_spares_sandbox" in filled.protections["confinement"]
    assert diagnosis_ids(filled, "compute_class_freqs") == ["function.crashed"]
    assert diagnosis_ids(after, "compute_class_freqs") == []


#: A `compute_class_freqs` that raises, on every case but the public one,
#: from code that claims the cell and line named in `where`.
CLAIMING_A_POSITION = '''
def compute_class_freqs(labels):
    if labels.shape[0] != 5:
        cell, line = {where}
        exec(compile("\\\\n" * (line - 1) + "raise ValueError('x')",
                     "<cell %d>" % cell, "exec"))
    p = labels.mean(axis=0)
    return p, 1 - p
'''


@needs_namespaces
def test_a_claimed_position_carries_nothing_out(assignment: Assignment) -> None:
    # The cell and line of an error are the submission's to claim: under
    # public evidence a hidden case's are never used, and any number out
    # of range is dropped (a huge one once broke the gradebook).
    code = CLAIMING_A_POSITION.replace("{where}", "labels.sum() * 1000 + 7, 1007")
    with Grader(assignment, GradingOptions(public_evidence=True)) as grader:
        result = grade_cells(grader, "import numpy as np\n", code)
    diagnosis, = result.functions["compute_class_freqs"].diagnoses
    assert diagnosis.id == "function.raised"
    assert (diagnosis.cell, diagnosis.line) == (2, None)


def test_a_huge_claimed_position_does_not_stop_the_batch(tmp_path: Path) -> None:
    import nbformat

    code = "import numpy as np\n" + CLAIMING_A_POSITION.replace(
        "{where}", "10 ** 60, 3")
    batch = tmp_path / "batch"
    batch.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]),
                   str(batch / "a_huge_position.ipynb"))
    samples = Path(__file__).resolve().parent.parent / "student_submissions"
    (batch / "b_correct.ipynb").write_bytes(
        (samples / "correct_vectorised.ipynb").read_bytes())
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "grade", str(batch), "-j", "1",
         "--gradebook", str(tmp_path / "gb.sqlite"), "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    scores = {Path(s["path"]).name: s["score"]
              for s in json.loads(out.read_text(encoding="utf-8"))["submissions"]}
    # The first raises on hidden cases and has no loss: no points, but graded.
    assert scores == {"a_huge_position.ipynb": 0.0, "b_correct.ipynb": 20.0}


#: Processes started with CLONE_PARENT (the child of whoever forked the
#: submission's), each ending at once; the function answers how many the
#: kernel let it start and the error of the last refusal.
_STARTING_SIBLINGS = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "started = 0\n"
    "for _ in range(40):\n"
    "    pid = libc.syscall(56, 0x8000 | 17, 0, 0, 0, 0)\n"
    "    if pid == 0:\n"
    "        os._exit(0)\n"
    "    started += pid > 0\n"
    "raise ValueError(f'started {started}, errno {ctypes.get_errno()}')")

#: A correct function that starts a thread (the process limit counts
#: threads) and fails if a zombie is left in its namespace.
_COUNTING_ZOMBIES = (
    "import threading\n"
    "worker = threading.Thread(target=lambda: None)\n"
    "worker.start()\n"
    "worker.join()\n"
    "for name in os.listdir('/proc'):\n"
    "    if name.isdigit():\n"
    "        with open(f'/proc/{name}/stat') as stat:\n"
    "            if stat.read().rsplit(')', 1)[1].split()[0] == 'Z':\n"
    "                raise ValueError('a zombie is left')")


@needs_namespaces
def test_a_submission_cannot_start_processes_beside_its_own(grader: Grader) -> None:
    result = grade_freqs_doing(grader, _STARTING_SIBLINGS,
                               imports="import numpy as np\nimport os\n")
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "raised ValueError: started 0, errno 1 " in message
    # Threads still start: clone3 is "not implemented", so the C library
    # falls back on clone, whose flags the filter reads.
    after = grade_freqs_doing(grader, _COUNTING_ZOMBIES,
                              imports="import numpy as np\nimport os\n")
    assert diagnosis_ids(after, "compute_class_freqs") == []
    assert after.functions["compute_class_freqs"].score == 10



@needs_namespaces
def test_a_submission_cannot_make_a_user_namespace(grader: Grader) -> None:
    # In one it would hold every capability, mounts among them.
    attempts = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "told = [libc.unshare(0x10000000), ctypes.get_errno(),\n"
        "        libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0),\n"
        "        ctypes.get_errno(), libc.syscall(435, 0, 0), ctypes.get_errno()]\n"
        "raise ValueError(told)")
    result = grade_freqs_doing(grader, attempts)
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    # unshare and clone: not permitted; clone3: not implemented.
    assert "raised ValueError: [-1, 1, -1, 1, -1, 38] " in message


@needs_namespaces
def test_processes_started_beside_the_submissions_are_reaped(
        assignment: Assignment) -> None:
    # Without the filter's rule (a machine without libseccomp has none),
    # the template reaps them: nothing is left for the next submission.
    with Grader(assignment, GradingOptions(case_timeout=1.0)) as grader:
        Path(grader.package.path, "sitecustomize.py").write_text(
            "from grader_inkernel import confinement\n"
            "confinement.BLOCKED_WITH_FLAG = [rule for rule in\n"
            "    confinement.BLOCKED_WITH_FLAG if rule[2] != 0x8000]\n",
            encoding="utf-8")
        imports = "import numpy as np\nimport os\n"
        hostile = grade_freqs_doing(grader, _STARTING_SIBLINGS, imports=imports)
        after = [grade_freqs_doing(grader, _COUNTING_ZOMBIES, imports=imports)
                 for _ in range(3)]
    message = hostile.functions["compute_class_freqs"].diagnoses[0].message
    assert "raised ValueError: started 40, errno " in message
    assert [diagnosis_ids(result, "compute_class_freqs") for result in after] \
        == [[], [], []]
    assert [result.functions["compute_class_freqs"].score
            for result in after] == [10, 10, 10]


@needs_namespaces
def test_the_next_submission_cannot_count_the_processes_of_the_last(
        grader: Grader) -> None:
    # Process numbers count on in a worker's namespace: unless reset, the
    # number the next submission gets would say how many the last started.
    telling = ("with open('/proc/loadavg') as load:\n"
               "    last = load.read().split()[-1]\n"
               "raise ValueError(f'pid {os.getpid()} last {last}')")
    imports = "import numpy as np\nimport os\n"
    told = []
    for started in (0, 30, 1):
        starting = (f"for _ in range({started}):\n"
                    "    pid = os.fork()\n"
                    "    if pid == 0:\n"
                    "        os._exit(0)\n"
                    "    os.waitpid(pid, 0)")
        grade_freqs_doing(grader, starting or "pass", imports=imports)
        result = grade_freqs_doing(grader, telling, imports=imports)
        message = result.functions["compute_class_freqs"].diagnoses[0].message
        told.append(re.search(r"pid \d+ last \d+", message).group())
    assert told == ["pid 101 last 101"] * 3
    assert "process_numbers_afresh" in result.protections["confinement"]


@needs_namespaces
def test_the_next_submission_cannot_read_the_network_counters_of_the_last(
        grader: Grader) -> None:
    # Each datagram to an unreachable address counts in the namespace's
    # statistics: shared, they would carry any number to the next one.
    imports = "import numpy as np\nimport os\nimport socket\n"
    reading = ("with open('/proc/net/snmp') as snmp:\n"
               "    rows = [line.split() for line in snmp if line.startswith('Ip:')]\n"
               "counted = dict(zip(rows[0], rows[1]))['OutNoRoutes']\n"
               "raise ValueError(f'counted {counted}')")
    sending = ("udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "for _ in range(137):\n"
               "    try:\n"
               "        udp.sendto(b'x', ('10.1.2.3', 9))\n"
               "    except OSError:\n"
               "        pass\n"
               "raise ValueError('sent')")
    told = []
    for first in ("pass", sending):
        grade_freqs_doing(grader, first, imports=imports)
        result = grade_freqs_doing(grader, reading, imports=imports)
        message = result.functions["compute_class_freqs"].diagnoses[0].message
        told.append(re.search(r"counted \d+", message).group())
    assert told == ["counted 0", "counted 0"]
    assert "private_network" in result.protections["confinement"]
