"""The README's test command is the one CI runs."""

from __future__ import annotations

from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command_as_written() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    marker = readme.index("<!-- test-command -->")
    command = readme[marker + 2]  # the line inside the fenced block
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command == "pip install '.[test]' && python -m pytest"
    assert ci_lines[-1] == command
