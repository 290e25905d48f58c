"""A student's self-check: public cases only, from the shell or a notebook.

    grader check my_notebook.ipynb
    >>> from grader import check; check(compute_class_freqs)
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment, load_assignment
from grader.options import GradingOptions
from grader.pipeline import Grader, SubmissionResult
from grader.reading import CodeCell, Notebook

HIDDEN_NOTE = ("Only the public cases were run. The final grade also uses hidden "
               "cases, so passing here does not guarantee full marks.")


def check_notebook(
    path: Path, assignment: Assignment | None = None
) -> SubmissionResult:
    assignment = assignment or load_assignment()
    with Grader(assignment, GradingOptions(public_only=True)) as grader:
        return grader.grade(path)


def check_source(*cells: str, assignment: Assignment | None = None) -> SubmissionResult:
    """Check code given as the sources of cells 1, 2, ..."""
    assignment = assignment or load_assignment()
    code_cells = tuple(CodeCell(number, source)
                       for number, source in enumerate(cells, start=1))
    notebook = Notebook(Path("<your code>"), 4, code_cells, "")
    with Grader(assignment, GradingOptions(public_only=True)) as grader:
        return grader.grade_notebook(notebook)


def print_check(
    console: Console, result: SubmissionResult, only: str | None = None
) -> bool:
    """Friendly pass/fail per function with hints; True when all pass."""
    if result.status == "error":
        reason = escape(result.error_message or "")
        console.print(f"[bold red]Cannot check[/]: {reason}", soft_wrap=True)
        return False
    all_pass = True
    for function in result.functions.values():
        if only and function.name != only:
            continue
        if function.passed:
            console.print(f"[bold green]PASS[/] {function.name}: all public cases "
                          "give the expected result.", soft_wrap=True)
            continue
        all_pass = False
        console.print(f"[bold red]FAIL[/] {function.name}", soft_wrap=True)
        for diagnosis in function.diagnoses:
            console.print(f"     {escape(diagnosis.message)}", soft_wrap=True)
    console.print(HIDDEN_NOTE, soft_wrap=True)
    return all_pass


def check(target: Callable[..., Any] | str | Path) -> bool:
    """Check a graded function (or a notebook path) from inside a notebook.

    For a function, its source and the modules its cell imported are checked
    in a sandbox, on the public cases only.
    """
    console = Console(highlight=False)
    if isinstance(target, (str, Path)):
        return print_check(console, check_notebook(Path(target)))
    graded = [function.name for function in load_assignment().functions]
    name = getattr(target, "__name__", None)
    if not callable(target) or name not in graded:
        what = f"`{name}`" if callable(target) and name else \
            f"a value of type {type(target).__name__}"
        console.print(escape(f"Cannot check {what}: pass one of the graded "
                             f"functions ({', '.join(graded)}) itself, or the "
                             "path of your notebook."), soft_wrap=True)
        return False
    try:
        lines, first = inspect.getsourcelines(target)
    except (OSError, TypeError):
        console.print(escape(f"Cannot check `{name}`: its code cannot be found; "
                             "run the cell that defines it, then check again."),
                      soft_wrap=True)
        return False
    source = textwrap.dedent("".join(lines))
    result = check_source(_imports_of(target), source)
    return print_check(console, _pointing_into(result, source, first),
                       only=target.__name__)


#: How a hint points at a line of the checked code (its cell 2).
_WHERE = re.compile(r"See cell 2, line (\d+)\.")


def _pointing_into(result: SubmissionResult, source: str, first: int
                   ) -> SubmissionResult:
    """Hints that point at the line in the student's own cell, quoted: the
    kernel does not know where a cell sits in the notebook, only on which
    line of its cell (or file) the function starts."""
    lines = source.splitlines()

    def where(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if not 0 < number <= len(lines):
            return match.group(0)
        return (f"See line {first + number - 1} of the cell that defines it: "
                f"`{lines[number - 1].strip()}`.")

    functions = {
        name: dataclasses.replace(function, diagnoses=tuple(
            dataclasses.replace(d, message=_WHERE.sub(where, d.message))
            for d in function.diagnoses))
        for name, function in result.functions.items()
    }
    return dataclasses.replace(result, functions=functions)


def _imports_of(function: Callable[..., Any]) -> str:
    """Import lines for the modules the function's globals name."""
    lines = []
    for name, value in getattr(function, "__globals__", {}).items():
        if isinstance(value, types.ModuleType) and not name.startswith("_"):
            module = value.__name__
            lines.append(f"import {module} as {name}" if module != name
                         else f"import {module}")
    return "\n".join(lines)
