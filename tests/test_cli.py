"""The command line: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.cli import main


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
