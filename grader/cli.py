"""The command line: a thin layer over the pipeline.

Exit status: 0 when the batch was graded (whatever the scores), 2 for a
usage or set-up error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from grader import __version__
from grader.assignment import load_assignment
from grader.collecting import collect
from grader.errors import AssignmentError, SubmissionError, UsageError
from grader.options import GradingOptions
from grader.reading import display_path, read_submission_bytes

log = logging.getLogger("grader")


def _output_file(_context: Any, option: click.Parameter,
                 path: Path | None) -> Path | None:
    """An output file whose folder exists: checked before any work, so a
    typo in a folder name does not cost a whole batch's grading."""
    if path is None:
        return None
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        state = "is a file" if folder.exists() else "does not exist"
        raise click.BadParameter(f"{path}: its folder {state}; create it "
                                 "or choose another path", param=option)
    if path.is_dir():
        raise click.BadParameter(f"{path}: is a folder; name a file",
                                 param=option)
    return path


def _not_overwriting(outputs: Iterable[Path | None], inputs: Iterable[Path]) -> None:
    """Refuse an output that would replace what the command reads: an easy
    slip is `--json` followed by a notebook's name."""
    outputs = [output for output in outputs if output is not None]
    if not outputs:
        return  # nothing to check: a batch's files are not resolved for it
    read = {_same_file_key(path) for path in inputs}
    for output in outputs:
        if output.suffix.lower() == ".ipynb" or _same_file_key(output) in read:
            raise UsageError(f"{output}: would replace a notebook or the "
                             "gradebook this command reads; choose another path")


def _same_file_key(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _write_output(path: Path, write: Callable[[], None], kept: str = "") -> None:
    """Run `write`; a file that cannot be written is one line naming it."""
    try:
        write()
    except OSError as exc:
        raise click.ClickException(
            f"{path}: could not be written ({exc.strerror or exc}){kept}; "
            "choose another path") from None


#: The same option on every command that needs the assignment.
assignment_option = click.option(
    "--assignment", "assignment_dir", type=click.Path(path_type=Path, file_okay=False),
    help="Assignment folder (default: the shipped one).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grader")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
def main(verbose: int) -> None:
    """Grade Jupyter notebook assignments and explain every mistake."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False),
              callback=_output_file,
              help="Write the results as JSON to this file.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False),
              callback=_output_file,
              help="Write one row per submission as CSV to this file.")
@click.option("--full", is_flag=True,
              help="Run every cell top to bottom first (slower; errors allowed).")
@click.option("--backend", type=click.Choice(["auto", "standin", "tensorflow"]),
              default="auto", show_default=True,
              help="Keras/TensorFlow in the kernel: the NumPy stand-in where "
                   "TensorFlow is missing (auto), always the stand-in, or real "
                   "TensorFlow.")
@click.option("--assignment", "assignment_dir",
              type=click.Path(path_type=Path, file_okay=False),
              help="Assignment folder (default: the one shipped with the grader, "
                   "reference/chest_xray in the project).")
@click.option("--engine", type=click.Choice(["fork", "kernel"]), default="fork",
              show_default=True,
              help="How the default mode runs code: a forked sandbox per "
                   "submission, or a Jupyter kernel (slower; --full always uses one).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Submissions graded at once (default: number of cores).")
@click.option("--cell-timeout", type=click.FloatRange(min=1), default=30.0,
              show_default=True, help="Seconds per cell in --full mode.")
@click.option("--case-timeout", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True, help="Seconds per call of a graded function.")
@click.option("--gradescope", "gradescope_path",
              type=click.Path(path_type=Path, dir_okay=False), callback=_output_file,
              help="Write Gradescope's results.json (one submission only).")
@click.option("--public-evidence", is_flag=True,
              help="Quote values only from public cases: a mistake seen only on "
                   "a hidden case is named without its values (for feedback "
                   "students read; implied by --gradescope).")
@click.option("--cluster", default=None, metavar="ADDRESS",
              help="Grade on a Dask scheduler (tcp://host:8786), or on a local "
                   "cluster of N workers (local:N). Needs grader[cluster].")
@click.option("--gradebook", "gradebook_path", type=click.Path(path_type=Path,
              dir_okay=False), default=Path("gradebook.sqlite"), show_default=True,
              help="SQLite gradebook; each result is stored as it is known, and "
                   "submissions already in it are not graded again.")
@click.option("--fresh", is_flag=True, help="Grade everything again, ignoring "
              "results already in the gradebook.")
@click.option("-q", "--quiet", is_flag=True, help="Only the one-line summaries.")
def grade(
    paths: tuple[Path, ...],
    json_path: Path | None,
    csv_path: Path | None,
    full: bool,
    backend: str,
    engine: str,
    assignment_dir: Path | None,
    jobs: int | None,
    cell_timeout: float,
    case_timeout: float,
    gradescope_path: Path | None,
    public_evidence: bool,
    cluster: str | None,
    gradebook_path: Path,
    fresh: bool,
    quiet: bool,
) -> None:
    """Grade the notebooks in PATHS: files, folders (searched recursively) or
    zips, in a flat, nbgrader, per-student or LMS layout."""
    console = Console(highlight=False)
    # Only when there is a zip: a run killed (SIGKILL) leaves this folder.
    unpacked = Path(tempfile.mkdtemp(prefix="grader-unpacked-")) if any(
        path.suffix.lower() == ".zip" and path.is_file() for path in paths) \
        else None
    try:
        collected = collect(paths, unpacked)
        submissions = [submission.path for submission in collected]
        left_out = {s.path: s.problem for s in collected if s.problem}
        students = {s.path: s.student for s in collected}
        shown = {s.path: s.shown for s in collected if s.shown is not None}
        assignment = load_assignment(assignment_dir)
        if gradescope_path and len(submissions) != 1:
            raise UsageError(f"--gradescope writes one submission's results; "
                             f"{len(submissions)} were given")
        if not gradebook_path.parent.is_dir():
            raise UsageError(f"{gradebook_path}: its folder does not exist; create "
                             "it or choose another --gradebook")
        _not_overwriting((json_path, csv_path, gradescope_path),
                         [*paths, *submissions, gradebook_path])
        # On a cluster the workers' machines are the ones that need it.
        if backend == "tensorflow" and not cluster and not _has_tensorflow():
            raise UsageError("--backend tensorflow: TensorFlow is not installed "
                             "here (pip install tensorflow-cpu); --backend auto "
                             "uses the stand-in where it is missing")
    except (UsageError, AssignmentError) as exc:
        _remove_unpacked(unpacked)
        raise click.UsageError(str(exc)) from None
    except BaseException:
        # Unpacked notebooks are students' work: none is left in /tmp.
        _remove_unpacked(unpacked)
        raise
    try:
        options = GradingOptions(
            mode="full" if full else "sliced",
            backend=backend,
            engine=engine,
            cell_timeout=cell_timeout,
            case_timeout=case_timeout,
            # Gradescope shows the results to the student, who may resubmit.
            public_evidence=public_evidence or gradescope_path is not None,
            # Students must not read each other's notebooks or the outputs.
            hidden_paths=_folders_to_hide(paths, submissions, left_out, unpacked),
        )
        batch = _Batch(submissions, students, assignment, options, gradebook_path,
                       fresh=fresh, quiet=quiet, jobs=jobs, cluster=cluster,
                       json_path=json_path, csv_path=csv_path, shown=shown,
                       left_out=left_out)
        try:
            results = _grade_batch(console, batch)
        except UsageError as exc:  # found once grading starts (--cluster)
            raise click.UsageError(str(exc)) from None
        if gradescope_path:
            from grader.exporting import gradescope_results

            text = json.dumps(gradescope_results(results[0]), indent=2) + "\n"
            _write_output(gradescope_path, lambda: gradescope_path.write_text(
                text, encoding="utf-8"))
    finally:
        _remove_unpacked(unpacked)


@dataclasses.dataclass(frozen=True)
class _Batch:
    """What `grader grade` was asked to do, once its arguments are checked."""

    submissions: list[Path]
    students: dict[Path, str]
    assignment: Any
    options: GradingOptions
    gradebook_path: Path
    fresh: bool = False
    quiet: bool = False
    jobs: int | None = None
    cluster: str | None = None
    json_path: Path | None = None
    csv_path: Path | None = None
    #: The names submissions unpacked from zips are shown under.
    shown: dict[Path, Path] = dataclasses.field(default_factory=dict)
    #: Zip members that could not be unpacked, with why: a row each.
    left_out: dict[Path, str] = dataclasses.field(default_factory=dict)

    def named(self, result: Any) -> Any:
        """`result` under the submission's shown name, with its student."""
        path = result.path
        name = self.shown.get(path, path)
        message = result.error_message
        if message and name != path:
            message = message.replace(display_path(path), display_path(name))
        return dataclasses.replace(result, path=name, error_message=message,
                                   student=self.students.get(path))


#: More folders than this to hide, and the folders given are hidden
#: instead: each hidden folder is a mount in every sandbox, and their
#: list goes on the sandbox's command line (a few thousand per-student
#: folders passed Linux's limit of 128 KB for one argument).
MANY_FOLDERS = 100


def _folders_to_hide(paths: tuple[Path, ...], submissions: list[Path],
                     left_out: dict[Path, str],
                     unpacked: Path | None) -> tuple[str, ...]:
    """The folders of the submissions, and the current folder (where the
    exports go): out of the sandbox's sight."""
    folders = {path.resolve().parent for path in submissions
               if path not in left_out}
    if len(folders) > MANY_FOLDERS:
        folders = set()
        for path in paths:
            if path.is_dir():
                folders.add(path.resolve())
            else:  # a notebook, or a zip (whose notebooks are unpacked)
                folders.add(path.resolve().parent)
        if unpacked is not None:
            folders.add(unpacked.resolve())
    return tuple(sorted({str(folder) for folder in folders} | {str(Path.cwd())}))


def _remove_unpacked(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _has_tensorflow() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def _record(book: Any, digest: str, result: Any) -> bool:
    """Store one result; False (and said) if it cannot be: one result that
    cannot be stored must not stop the batch. It is still printed and
    exported, and graded again next run."""
    try:
        book.record(digest, result.to_dict(), student=result.student)
    except (sqlite3.Error, OverflowError, ValueError) as exc:
        log.error("%s: its result could not be stored in the gradebook "
                  "(%s); it will be graded again next time",
                  display_path(result.path), exc)
        return False
    return True


def _grade_batch(console: Console, batch: _Batch) -> list[Any]:
    from grader.gradebook import Gradebook
    from grader.pipeline import Grader, SubmissionResult, hidden_from_sandbox
    from grader.reporting import print_result, write_csv, write_json

    submissions = batch.submissions
    assignment, options = batch.assignment, batch.options
    gradebook_path, quiet = batch.gradebook_path, batch.quiet
    try:
        book = Gradebook(gradebook_path, __version__, assignment.name,
                         assignment.digest, settings=options.result_settings())
    except sqlite3.DatabaseError as exc:
        raise click.UsageError(f"{gradebook_path}: cannot be used as the "
                               f"gradebook ({exc}); it must be one `grader "
                               "grade` wrote, in a folder the grader may write "
                               "to, or choose another --gradebook") from None
    # Hashing every file costs a read of the whole batch; only a gradebook
    # that holds results of this kind needs it, to find them. Otherwise the
    # workers' own hashes (result.digest) are what gets recorded.
    digests: dict[Path, str | None] = {}
    known: dict[Path, SubmissionResult] = {}
    copies = 0
    if not batch.fresh and book.has_results():
        digests = {path: submission_digest(path) for path in submissions
                   if path not in batch.left_out}
        for path, digest in digests.items():
            name = display_path(batch.shown.get(path, path))
            stored = book.lookup(digest, name) if digest else None
            if stored is None:
                continue
            result = SubmissionResult.from_dict(stored, path)
            copied = stored["path"] != name
            if copied and result.error_message:
                # Copied from another file: its messages name this one.
                result = dataclasses.replace(result, error_message=(
                    result.error_message.replace(stored["path"],
                                                 display_path(path))))
            known[path] = batch.named(result)
            if copied:
                # The same content as a file graded before (an untouched
                # copy of the assignment, say): the same result, but this
                # file's own row, or the gradebook would lack this student.
                copies += _record(book, digest, known[path])
    for result in known.values():
        print_result(console, result, hints=not quiet)
    if known:
        same = (f", {copies} of them identical to files graded before"
                if copies else "")
        console.print(f"({len(known)} already in {gradebook_path}{same}; --fresh "
                      "grades them again)", soft_wrap=True)

    # Not in the gradebook (there is no file to key them by): shown first.
    max_score = sum(f.max_score for f in assignment.functions)
    left_out = {path: SubmissionResult(
        path, "error", 0.0, max_score, error_kind="not_unpacked",
        error_message=problem, student=batch.students.get(path))
        for path, problem in batch.left_out.items()}
    for result in left_out.values():
        print_result(console, result, hints=not quiet)
    pending = [path for path in submissions
               if path not in known and path not in left_out]
    arrived: dict[Path, SubmissionResult] = {}
    printed = 0

    def keep(result: SubmissionResult) -> None:
        nonlocal printed
        path = result.path
        digest = result.digest or digests.get(path)
        if digest is None and result.status == "error":
            digest = submission_digest(path)  # a file that is no notebook
        result = batch.named(result)
        # A crash of the grader is not a result: the next run tries again.
        if digest and result.error_kind != "grader_crashed":
            _record(book, digest, result)
        # Stored at once, printed in the order the submissions were given.
        arrived[path] = result
        while printed < len(pending) and pending[printed] in arrived:
            print_result(console, arrived[pending[printed]], hints=not quiet)
            printed += 1

    log.info("grading %d submission%s of %s", len(pending),
             "" if len(pending) == 1 else "s", assignment.name)
    with _progress(console, len(pending)) as bar:
        task = bar.add_task("grading", total=len(pending)) if bar else None

        def keep_and_count(result: SubmissionResult) -> None:
            keep(result)
            if bar is not None and task is not None:
                bar.advance(task)

        if batch.cluster:
            from grader.cluster import grade_on_cluster

            # The workers build their own graders; none is needed here.
            remote_options = dataclasses.replace(options, hidden_paths=(
                hidden_from_sandbox(assignment, options.hidden_paths)))
            fresh_results = grade_on_cluster(batch.cluster, pending, assignment,
                                             remote_options, keep_and_count)
        else:
            with Grader(assignment, options) as grader:
                fresh_results = grader.grade_many(
                    pending, jobs=batch.jobs or os.cpu_count() or 1,
                    on_result=keep_and_count)
    book.close()
    graded_now = {path: arrived.get(path) or batch.named(result)
                  for path, result in zip(pending, fresh_results, strict=True)}
    results = [known.get(path) or left_out.get(path) or graded_now[path]
               for path in submissions]
    # The results are in the gradebook already: a file that cannot be
    # written loses nothing, and says so.
    kept = f"; the results are in {gradebook_path}"
    if batch.json_path:
        json_path = batch.json_path
        _write_output(json_path, lambda: write_json(json_path, assignment, results),
                      kept)
    if batch.csv_path:
        csv_path = batch.csv_path
        _write_output(csv_path, lambda: write_csv(csv_path, assignment, results),
                      kept)

    graded = sum(1 for r in results if r.status == "graded")
    full_marks = sum(1 for r in results
                     if r.status == "graded" and r.score == r.max_score)
    console.print(
        f"\n{len(results)} submission{'' if len(results) == 1 else 's'}: "
        f"{graded} graded, {full_marks} with full "
        f"marks, {len(results) - graded} could not be read.",
        soft_wrap=True,
    )
    return results


class _RateColumn(ProgressColumn):
    """Submissions per second, once rich has measured a speed."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:.1f}/s" if speed else "")


@contextlib.contextmanager
def _progress(console: Console, total: int) -> Iterator[Progress | None]:
    """A progress bar on a terminal for batches; nothing otherwise."""
    if not console.is_terminal or total < 2:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        yield bar


def submission_digest(path: Path) -> str | None:
    """SHA-256 of the file's bytes; None when it is not a readable file."""
    try:
        return hashlib.sha256(read_submission_bytes(path)).hexdigest()
    except SubmissionError:
        return None


@main.command("check")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False),
              callback=_output_file,
              help="Write the result as JSON (same contract as grade).")
@assignment_option
def check_command(notebook: Path, json_path: Path | None,
                  assignment_dir: Path | None) -> None:
    """Check your notebook on the public cases before you submit.

    Exit status 0 when every graded function passes them, 1 otherwise.
    """
    from grader.reporting import write_json
    from grader.selfcheck import check_notebook, print_check

    try:
        if not notebook.exists():
            raise UsageError(f"{notebook}: no such file")
        if notebook.is_dir():
            raise UsageError(f"{notebook}: is a folder; check one notebook "
                             "(grader check folder/my_notebook.ipynb)")
        _not_overwriting([json_path], [notebook])
        assignment = load_assignment(assignment_dir)
    except (UsageError, AssignmentError) as exc:
        raise click.UsageError(str(exc)) from None
    result = check_notebook(notebook, assignment)
    # One notebook on its own: its file name names the student, as in grade.
    result = dataclasses.replace(result, student=notebook.stem)
    if json_path:
        _write_output(json_path, lambda: write_json(json_path, assignment, [result]))
    passed = print_check(Console(highlight=False), result)
    sys.exit(0 if passed else 1)


@main.command("report")
@click.option("--gradebook", "gradebook_path", type=click.Path(path_type=Path,
              dir_okay=False), default=Path("gradebook.sqlite"), show_default=True,
              help="The gradebook to report on.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              callback=_output_file,
              default=Path("class_report.html"), show_default=True,
              help="Where to write the HTML page.")
@click.option("--title", default="Class report", show_default=True)
def report_command(gradebook_path: Path, output: Path, title: str) -> None:
    """Write a self-contained HTML class report from the gradebook."""
    from grader.classreport import load_results, render

    if not gradebook_path.is_file():
        raise click.UsageError(f"{gradebook_path}: no such gradebook; run "
                               "`grader grade` first or pass --gradebook")
    try:
        _not_overwriting([output], [gradebook_path])
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        results = load_results(gradebook_path)
    except sqlite3.DatabaseError as exc:
        raise click.UsageError(f"{gradebook_path}: cannot be read as a "
                               f"gradebook ({exc}); pass the one `grader grade` "
                               "wrote (SQLite keeps a journal beside it, so its "
                               "folder must be writable)") from None
    page = render(results, title)
    _write_output(output, lambda: output.write_text(page, encoding="utf-8"))
    count = len(results)
    click.echo(f"wrote {output} ({count} submission{'' if count == 1 else 's'})")


@main.command("export-student")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@assignment_option
def export_student(folder: Path, assignment_dir: Path | None) -> None:
    """Write the package students may have into FOLDER: public cases, their
    expected results and the hint texts; no reference code, no hidden case."""
    from grader.exporting import export_student_package

    try:
        assignment = load_assignment(assignment_dir)
    except AssignmentError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        written = export_student_package(assignment, folder)
    except OSError as exc:
        raise click.ClickException(
            f"{folder}: could not be written ({exc.strerror or exc}); choose "
            "a folder the grader may create or write to") from None
    for path in written:
        click.echo(f"wrote {path}")


@main.command("forum")
@click.argument("post", type=click.File("r", encoding="utf-8"))
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False),
              callback=_output_file,
              help="Write the result as JSON (the grade contract plus repairs).")
@assignment_option
def forum_command(post: Any, json_path: Path | None,
                  assignment_dir: Path | None) -> None:
    """Diagnose code pasted in a forum POST (a file, or - for stdin).

    Prints the repairs made to the pasted code, then a reply a mentor can post.
    """

    from grader.forum import forum_notebook, reply_text
    from grader.pipeline import Grader, batch_report

    try:
        assignment = load_assignment(assignment_dir)
    except AssignmentError as exc:
        raise click.UsageError(str(exc)) from None
    name = Path(post.name).name if post.name != "<stdin>" else "forum post"
    if post.name != "<stdin>":
        try:
            _not_overwriting([json_path], [Path(post.name)])
        except UsageError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        text = post.read()
    except UnicodeDecodeError:
        raise click.UsageError(f"{post.name}: not UTF-8 text; save the post as "
                               "UTF-8 (or paste it into a new file) and try "
                               "again") from None
    try:
        notebook, forum = forum_notebook(text, assignment, Path(name))
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    with Grader(assignment, GradingOptions(public_evidence=True)) as grader:
        result = grader.grade_notebook(notebook)
    if forum.function in result.functions:
        # Only the function the post is about; the others were not pasted.
        posted = result.functions[forum.function]
        result = dataclasses.replace(result, functions={forum.function: posted},
                                     score=posted.score, max_score=posted.max_score)

    console = Console(highlight=False)
    console.print("Repairs made to the pasted code:", soft_wrap=True)
    for repaired in forum.repairs or ["none"]:
        console.print(f"  - {escape(repaired)}", soft_wrap=True)
    console.print("\nReply:\n", soft_wrap=True)
    console.print(escape(reply_text(forum, result)), soft_wrap=True)
    if json_path:
        report = batch_report(assignment, [result])
        report["repairs"] = forum.repairs
        report["function"] = forum.function
        text = json.dumps(report, indent=2) + "\n"
        _write_output(json_path, lambda: json_path.write_text(text, encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
