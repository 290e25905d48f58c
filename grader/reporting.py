"""Stage 8: report results: terminal summary, JSON and CSV exports."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment
from grader.pipeline import SubmissionResult, batch_report
from grader.reading import display_path


def print_summary(
    console: Console, results: Iterable[SubmissionResult], hints: bool = True
) -> None:
    """One line per submission, then its hints, indented."""
    for result in results:
        print_result(console, result, hints)


def print_result(
    console: Console, result: SubmissionResult, hints: bool = True
) -> None:
    name = escape(display_path(result.path))
    if result.status == "error":
        console.print(
            f"[bold red]ERROR[/]  {name}: {escape(result.error_kind or '')}",
            soft_wrap=True,
        )
        # What to do about a file is no hint: said even with --quiet.
        console.print(f"       {escape(result.error_message or '')}", soft_wrap=True)
        return
    full = result.score == result.max_score
    colour = "green" if full else ("yellow" if result.score > 0 else "red")
    passed = sum(1 for f in result.functions.values() if f.passed)
    console.print(
        f"[bold {colour}]{_points(result.score):>5}/{_points(result.max_score)}[/]  "
        f"{name}  ({passed}/{len(result.functions)} functions pass)",
        soft_wrap=True,
    )
    if not hints:
        return
    for function in result.functions.values():
        for diagnosis in function.diagnoses:
            console.print(
                f"       [bold]{escape(function.name)}[/] [cyan]{diagnosis.id}[/]: "
                f"{escape(diagnosis.message)}",
                soft_wrap=True,
            )


def _points(value: float) -> str:
    return f"{value:g}"


def write_json(
    path: Path, assignment: Assignment, results: list[SubmissionResult]
) -> None:
    text = json.dumps(batch_report(assignment, results), indent=2, allow_nan=False)
    _write_atomically(path, text + "\n")


def write_csv(
    path: Path, assignment: Assignment, results: list[SubmissionResult]
) -> None:
    names = [f.name for f in assignment.functions]
    header = (["student", "path", "status", "error_kind", "score", "max_score"]
              + [f"{name}_score" for name in names]
              + [f"{name}_diagnoses" for name in names])
    rows: list[list[Any]] = []
    for result in results:
        scores = [result.functions[n].score if n in result.functions else ""
                  for n in names]
        ids = [" ".join(d.id for d in result.functions[n].diagnoses)
               if n in result.functions else "" for n in names]
        rows.append([result.student or "", display_path(result.path), result.status,
                     result.error_kind or "", result.score, result.max_score,
                     *scores, *ids])

    def write(handle: TextIO) -> None:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([_inert(cell) for cell in row] for row in rows)

    _replace_atomically(path, write, newline="")


def _inert(cell: Any) -> Any:
    """A text cell a spreadsheet shows as text: one starting with = + - @
    (a student's file or folder name can) would be run as a formula."""
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


def _write_atomically(path: Path, text: str) -> None:
    _replace_atomically(path, lambda handle: handle.write(text))


def _replace_atomically(path: Path, write: Callable[[TextIO], object],
                        newline: str | None = None) -> None:
    """Write `path` whole or not at all: into a file beside it, then put in
    its place. A new file gets the permissions any new file gets (the
    umask), not the owner-only ones of a temporary file, so that the
    course's staff can read an export; a file replaced keeps its own
    (a private gradebook export stays private). Through a symbolic link,
    the file it names is replaced; a device or pipe (/dev/null) is written
    to as it is. No temporary file is left if writing fails."""
    target = path.resolve() if path.is_symlink() else path
    try:
        existing = os.stat(target)
    except OSError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with open(target, "w", newline=newline, encoding="utf-8") as handle:
            write(handle)
        return
    folder = target.parent if str(target.parent) else Path(".")
    with tempfile.NamedTemporaryFile(
        "w", newline=newline, encoding="utf-8", dir=folder, delete=False,
        suffix=".tmp"
    ) as handle:
        try:
            write(handle)
            handle.flush()
            if existing is None:
                os.chmod(handle.name, 0o666 & ~_umask())
            else:
                os.chmod(handle.name, stat.S_IMODE(existing.st_mode))
                with contextlib.suppress(OSError):  # not ours to give away
                    os.chown(handle.name, -1, existing.st_gid)
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, target)


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it; put back at once
    os.umask(mask)
    return mask
