"""Locating: magics, repeated definitions, syntax errors, what the slice runs."""

from __future__ import annotations

from grader.locating import locate, python_source
from tests.harness import notebook_of

NAMES = ["compute_class_freqs", "get_weighted_loss"]


def test_line_magics_and_shell_escapes_keep_line_numbers() -> None:
    source = "!ls -l\n%matplotlib inline\nfiles = !ls\nx = 1\n"
    converted = python_source(source)
    assert converted is not None
    lines = converted.splitlines()
    assert len(lines) == 4
    assert lines[0] == "get_ipython().system('ls -l')"
    assert lines[3] == "x = 1"


def test_time_cell_magic_runs_its_body_and_other_cell_magics_are_skipped() -> None:
    assert python_source("%%time\ndef f():\n    return 1\n") == \
        "\ndef f():\n    return 1\n"
    assert python_source("%%bash\nls -l\n") is None
    assert python_source("%%writefile x.py\nprint(1)\n") is None


def test_the_last_definition_counts() -> None:
    located = locate(notebook_of(
        "def compute_class_freqs(labels):\n    return 1\n",
        "x = 2",
        "\n\ndef compute_class_freqs(labels):\n    return 2\n",
    ), NAMES)
    definition = located.definitions["compute_class_freqs"]
    assert (definition.cell, definition.line) == (3, 3)


def test_a_syntax_error_in_the_last_definition_is_reported_with_its_line() -> None:
    located = locate(notebook_of(
        "def get_weighted_loss(a, b, e):\n    return 1\n",
        "def get_weighted_loss(a, b, e):\n    x = (1 +\n    return x\n",
    ), NAMES)
    assert "get_weighted_loss" not in located.definitions
    problem = located.syntax_errors["get_weighted_loss"]
    assert problem.cell == 2 and problem.line == 2


def test_the_slice_holds_needed_imports_helpers_and_constants_only() -> None:
    located = locate(notebook_of(
        "import numpy as np, util\nimport pandas as pd\nfrom public_tests import *\n",
        "EPS = 1e-7\ntrain_df = pd.read_csv('x.csv')\n",
        "def helper(x):\n    return np.mean(x, axis=0)\n",
        "def compute_class_freqs(labels):\n    p = helper(labels) + EPS * 0\n"
        "    return p, 1 - p\n",
        "model.fit(train_df)\n",
    ), NAMES)
    kinds = [(s.cell, s.line, s.kind, s.binds) for s in located.snippets]
    assert kinds == [
        (1, 1, "import", ("np",)),
        (2, 1, "assignment", ("EPS",)),
        (3, 1, "definition", ("helper",)),
        (4, 1, "definition", ("compute_class_freqs",)),
    ]
    assert located.globals_not_run == {}


def test_a_global_set_by_a_data_cell_is_recorded_not_run() -> None:
    located = locate(notebook_of(
        "import pandas as pd\ntrain_df = pd.read_csv('x.csv')\n",
        "def compute_class_freqs(labels):\n    n = len(train_df)\n"
        "    return labels.sum(0) / n, 1 - labels.sum(0) / n\n",
    ), NAMES)
    setting = located.globals_not_run["train_df"]
    assert (setting.cell, setting.line) == (1, 2)
    assert all(s.binds != ("train_df",) for s in located.snippets)


def test_a_misspelled_function_gets_a_suggestion() -> None:
    located = locate(notebook_of(
        "# GRADED FUNCTION: get_weighted_loss\ndef get_weighted_los(a, b, e):\n"
        "    return 1\n",
    ), NAMES)
    assert located.suggestions["get_weighted_loss"] == ("get_weighted_los",)
    assert located.markers["get_weighted_loss"] == 1


def test_package_installs_are_never_run() -> None:
    converted = python_source("!pip install seaborn\n%pip install x\nimport numpy\n")
    assert converted is not None
    assert converted.splitlines() == [
        "pass  # grader: package installation skipped",
        "pass  # grader: package installation skipped",
        "import numpy",
    ]


def test_full_mode_runs_each_statement_of_a_cell_on_its_own() -> None:
    located = locate(notebook_of("import pandas\nimport numpy as np\n\nx = 1\n"), NAMES)
    statements = located.cells[0].statements()
    assert [(s.cell, s.line) for s in statements] == [(1, 1), (1, 2), (1, 4)]
    assert statements[2].source == "\n\n\nx = 1\n"


def test_a_lambda_or_an_alias_is_a_definition() -> None:
    located = locate(notebook_of(
        "import numpy as np\n",
        "def _freqs(labels):\n    p = np.mean(labels, axis=0)\n    return p, 1 - p\n",
        "compute_class_freqs = _freqs\n",
        "get_weighted_loss = lambda pw, nw, e=1e-7: (lambda y, p: 0)\n",
    ), NAMES)
    assert (located.definitions["compute_class_freqs"].cell,
            located.definitions["get_weighted_loss"].cell) == (3, 4)
    binds = [s.binds for s in located.snippets]
    assert ("_freqs",) in binds and ("compute_class_freqs",) in binds
    assert ("get_weighted_loss",) in binds
