"""The command line: exit codes and messages."""

from __future__ import annotations

import csv
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.cli import main
from tests.conftest import SAMPLES


def test_a_missing_path_is_a_usage_error_with_exit_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["grade", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope: no such file or folder" in result.output


def test_a_folder_without_notebooks_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["grade", str(tmp_path)])
    assert result.exit_code == 2
    assert "no notebooks (.ipynb) found" in result.output


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["grade", "--frobnicate", str(tmp_path)])
    assert result.exit_code == 2


def test_bad_notebooks_still_exit_0_and_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty.ipynb").write_bytes(b"")
    (tmp_path / "page.ipynb").write_text("<html></html>", encoding="utf-8")
    result = CliRunner().invoke(main, ["grade", str(tmp_path), "-j", "1",
                                       "--gradebook", str(tmp_path / "gb.sqlite")])
    assert result.exit_code == 0, result.output
    assert "empty.ipynb: empty" in result.output
    assert "page.ipynb: not_a_notebook" in result.output
    assert "2 submissions: 0 graded, 0 with full marks, 2 could not be read." \
        in result.output


def test_quiet_still_says_what_to_do_about_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "empty.ipynb").write_bytes(b"")
    result = CliRunner().invoke(main, ["grade", str(tmp_path), "-q", "-j", "1",
                                       "--gradebook", str(tmp_path / "gb.sqlite")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = next(i for i, line in enumerate(lines) if "empty.ipynb: empty" in line)
    assert "empty.ipynb: the file is empty" in lines[at + 1]


def test_odd_file_names_and_identical_files_are_all_graded(tmp_path: Path) -> None:
    import json
    import os
    import shutil

    from tests.conftest import SAMPLES

    batch = tmp_path / "batch"
    batch.mkdir()
    sample = SAMPLES / "wrong_axis.ipynb"
    names = [b"latin1_\xe9\xff.ipynb", b"quote's \"and\" space.ipynb", b"--full.ipynb"]
    for name in names:
        shutil.copy(sample, os.path.join(os.fsencode(batch), name))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["grade", str(batch), "-j", "1", "--json",
                                       str(out), "--gradebook",
                                       str(tmp_path / "gb.sqlite")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [s["score"] for s in report["submissions"]] == [12.0, 12.0, 12.0]
    assert any("latin1_\\xe9\\xff.ipynb" in s["path"] for s in report["submissions"])
    import sqlite3
    with sqlite3.connect(tmp_path / "gb.sqlite") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 3


def test_a_gradebook_in_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "x.ipynb").write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(main, ["grade", str(tmp_path / "x.ipynb"),
                                       "--gradebook", str(tmp_path / "no" / "gb")])
    assert result.exit_code == 2
    assert "its folder does not exist" in result.output


def test_the_tensorflow_backend_without_tensorflow_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Graded anyway, every Keras submission would be told that importing
    # the Keras backend failed, as if it were the student's fault.
    monkeypatch.setattr("grader.cli._has_tensorflow", lambda: False)
    (tmp_path / "x.ipynb").write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(main, ["grade", str(tmp_path / "x.ipynb"),
                                       "--backend", "tensorflow"])
    assert result.exit_code == 2
    assert "--backend tensorflow: TensorFlow is not installed here" in result.output


def test_names_students_chose_stay_inert_in_terminal_and_spreadsheet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A zip of an LMS download: every name in it is a student's choice.
    notebook = (SAMPLES / "wrong_axis.ipynb").read_bytes()
    archive = tmp_path / "week2.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("=HYPERLINK(1)/x.ipynb", notebook)
        bundle.writestr("esc\x1b[2J\rfake 20/20/x.ipynb", notebook)
        bundle.writestr("long/" + "n" * 300 + ".ipynb", notebook)
        bundle.writestr("bad\x1b]0;x\x07/x.ipynb", "not a notebook")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    table = tmp_path / "grades.csv"
    result = CliRunner().invoke(main, [
        "grade", str(archive), "-q", "-j", "1", "--csv", str(table),
        "--gradebook", str(tmp_path / "gb.sqlite")])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    assert f"{archive}/esc\\x1b[2J\\x0dfake 20/20/x.ipynb" in result.output
    # Its messages too name it escaped, after the zip, not the folder it
    # was unpacked in.
    assert (f"{archive}/bad\\x1b]0;x\\x07/x.ipynb: is not valid notebook JSON"
            in " ".join(result.output.split()))
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The member whose name is too long for the disk still has its row.
    assert [(row["student"], row["status"], row["error_kind"], row["score"])
            for row in rows] == [
        ("'=HYPERLINK(1)", "graded", "", "12.0"),
        ("bad\\x1b]0;x\\x07", "error", "invalid_json", "0.0"),
        ("esc\\x1b[2J\\x0dfake 20", "graded", "", "12.0"),
        ("long", "error", "not_unpacked", "0.0")]
    assert list(scratch.iterdir()) == []  # nothing unpacked is left behind
    # Readable by the course's staff, as any file the user makes.
    assert table.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_many_student_folders_are_hidden_by_the_folder_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Thousands of per-student folders, one hidden each, passed Linux's
    # limit for the sandbox's command line: every submission failed.
    from grader.cli import MANY_FOLDERS, _folders_to_hide

    monkeypatch.chdir(tmp_path)
    batch = tmp_path / "batch"
    few = [batch / f"s{n}" / "x.ipynb" for n in range(2)]
    many = [batch / f"s{n}" / "x.ipynb" for n in range(MANY_FOLDERS + 1)]
    lone = tmp_path / "late" / "y.ipynb"
    for path in [*many, lone]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}", encoding="utf-8")
    assert _folders_to_hide((batch,), few, {}, None) == (
        str(tmp_path), str(batch / "s0"), str(batch / "s1"))
    assert _folders_to_hide((batch, lone), [*many, lone], {}, None) == (
        str(tmp_path), str(batch), str(tmp_path / "late"))


def test_an_output_never_replaces_a_notebook_or_the_gradebook(
        tmp_path: Path) -> None:
    # `--json` followed by a notebook's name: an easy slip.
    notebook = tmp_path / "ana.ipynb"
    notebook.write_bytes((SAMPLES / "wrong_axis.ipynb").read_bytes())
    other = tmp_path / "bo.ipynb"
    other.write_bytes(notebook.read_bytes())
    gradebook = tmp_path / "gb.sqlite"
    for arguments in (
            ["grade", "--json", str(other), str(notebook), "--gradebook",
             str(gradebook)],
            ["grade", str(notebook), "--csv", str(gradebook), "--gradebook",
             str(gradebook)],
            ["check", str(notebook), "--json", str(notebook)]):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 2, arguments
        assert "would replace a notebook or the gradebook this command reads" \
            in result.output
    assert other.read_bytes() == notebook.read_bytes()
    assert not gradebook.exists()


def test_an_export_keeps_what_it_replaces_private_and_writes_through_links(
        tmp_path: Path) -> None:
    notebook = tmp_path / "ana.ipynb"
    notebook.write_bytes((SAMPLES / "wrong_axis.ipynb").read_bytes())
    private = tmp_path / "private.csv"
    private.write_text("old\n", encoding="utf-8")
    private.chmod(0o600)
    shared = tmp_path / "shared.csv"
    shared.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(shared.name)
    for table in (private, link):
        result = CliRunner().invoke(main, [
            "grade", str(notebook), "-q", "-j", "1", "--csv", str(table),
            "--gradebook", str(tmp_path / "gb.sqlite")])
        assert result.exit_code == 0, result.output
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text(encoding="utf-8").startswith("student,path,")
    assert link.is_symlink()
    assert shared.read_text(encoding="utf-8").startswith("student,path,")
    assert list(tmp_path.glob("*.tmp")) == []


def test_bad_input_to_any_command_is_one_line_naming_it(tmp_path: Path) -> None:
    notebook = tmp_path / "ana.ipynb"
    notebook.write_bytes((SAMPLES / "wrong_axis.ipynb").read_bytes())
    not_a_database = tmp_path / "notes.sqlite"
    not_a_database.write_text("my notes\n", encoding="utf-8")
    latin = tmp_path / "post.md"
    latin.write_bytes(b"caf\xe9\n```\ndef f(x):\n    return x\n```\n")
    a_file = tmp_path / "file"
    a_file.write_text("", encoding="utf-8")
    cases = [
        (["grade", str(notebook), "--gradebook", str(not_a_database)], 2,
         f"Error: {not_a_database}: cannot be used as the gradebook (file is "
         "not a database); it must be one `grader grade` wrote, in a folder "
         "the grader may write to, or choose another --gradebook"),
        (["report", "--gradebook", str(not_a_database),
          "-o", str(tmp_path / "r.html")], 2,
         f"Error: {not_a_database}: cannot be read as a gradebook (file is not "
         "a database); pass the one `grader grade` wrote (SQLite keeps a "
         "journal beside it, so its folder must be writable)"),
        (["grade", str(notebook), "--cluster", "local:x", "--gradebook",
          str(tmp_path / "gb.sqlite")], 2,
         "Error: --cluster local:x: local:N needs a number of workers, such "
         "as local:4"),
        (["forum", str(latin)], 2,
         f"Error: {latin}: not UTF-8 text; save the post as UTF-8 (or paste it "
         "into a new file) and try again"),
        (["export-student", str(a_file / "package")], 1,
         f"Error: {a_file / 'package'}: could not be written (Not a directory); "
         "choose a folder the grader may create or write to"),
        (["grade", str(notebook), "--json", str(a_file / "out.json")], 2,
         f"Error: Invalid value for '--json': {a_file / 'out.json'}: its folder "
         "is a file; create it or choose another path"),
    ]
    for arguments, code, said in cases:
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == code, (arguments, result.output)
        assert " ".join(result.output.split()).endswith(said), arguments
