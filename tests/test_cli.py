"""The command line: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

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
