"""Student code that fails: each failure gets its own diagnosis, never a pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grader.assignment import Assignment
from grader.options import GradingOptions
from grader.pipeline import Grader
from tests.harness import diagnosis_ids, grade_cells

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


def freqs_body(body: str) -> str:
    return "def compute_class_freqs(labels):\n" + "".join(
        f"    {line}\n" for line in body.splitlines())


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
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.crashed"]
    assert result.functions["compute_class_freqs"].score == 0


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
    assert diagnosis_ids(result, "compute_class_freqs") == ["function.definition_failed"]
    message = result.functions["compute_class_freqs"].diagnoses[0].message
    assert "NameError: name 'AXIS' is not defined" in message


def test_graded_functions_defined_by_assignment_are_graded(grader: Grader) -> None:
    cells = ["import numpy as np\n",
             "def _freqs(labels):\n    p = np.mean(labels, axis=0)\n    return p, 1 - p\n",
             "compute_class_freqs = _freqs\n"]
    result = grade_cells(grader, *cells)
    assert diagnosis_ids(result, "compute_class_freqs") == []
