"""Layouts instructors receive: the student comes from the layout."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import pytest

from grader.collecting import collect, student_of
from grader.errors import UsageError


@pytest.mark.parametrize("relative, student", [
    ("submitted/ada_l/chest_xray/C1W2.ipynb", "ada_l"),
    ("course/submitted/bo/chest_xray/C1W2.ipynb", "bo"),
    ("carla/C1W2.ipynb", "carla"),
    ("dmitri/week2/C1W2.ipynb", "dmitri"),
    ("lovelace_ada_12345_67890_C1W2_assignment.ipynb", "lovelace_ada_12345"),
    ("emil_notebook.ipynb", "emil_notebook"),
    ("FRIDA/WEEK2.IPYNB", "FRIDA"),
    ("gil\x1b[2J\nx.ipynb", "gil\\x1b[2J\\x0ax"),
    ("\u202eecila/x.ipynb", "\\u202eecila"),  # would read "alice"
    ("h\u200bal/x.ipynb", "h\\u200bal"),
    ("José/x.ipynb", "José"),
    (".ipynb", ".ipynb"),
])
def test_student_from_layout(relative: str, student: str) -> None:
    assert student_of(PurePosixPath(relative)) == student


def test_a_zip_of_a_layout_is_unpacked_safely(tmp_path: Path) -> None:
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("submitted/fay/chest_xray/C1W2.ipynb", "{}")
        bundle.writestr("submitted/gus/chest_xray/C1W2.ipynb", "{}")
        bundle.writestr("../../escaped.ipynb", "{}")
        bundle.writestr("notes.txt", "not a notebook")
        bundle.writestr("__MACOSX/submitted/._x.ipynb", "junk")
    unpack = tmp_path / "unpacked"
    unpack.mkdir()
    found = collect((archive,), unpack)
    unpacked = [s for s in found if s.problem is None]
    assert [s.student for s in unpacked] == ["fay", "gus"]
    assert not (tmp_path / "escaped.ipynb").exists()
    assert all(unpack in s.path.parents for s in unpacked)
    # The one that would leave the folder still has a row, saying why.
    assert [(str(s.path), s.problem) for s in found if s.problem] == [
        (f"{archive}/../../escaped.ipynb",
         f"{archive}: ../../escaped.ipynb: not graded: its path leads out of "
         "the archive's folder; unpack the zip and grade the file on its own")]
    assert [s.shown for s in unpacked] == [
        archive / "submitted/fay/chest_xray/C1W2.ipynb",
        archive / "submitted/gus/chest_xray/C1W2.ipynb"]


def test_a_broken_zip_is_said_and_the_other_paths_are_collected(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 not really")
    notebook = tmp_path / "ida.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    with caplog.at_level("WARNING", logger="grader"):
        found = collect((archive, notebook), tmp_path / "unpacked")
    assert [s.path for s in found] == [notebook]
    assert [r.getMessage() for r in caplog.records] == [
        f"{archive}: not graded: not a readable zip file (File is not a zip "
        "file); check the download"]
    # Alone, it leaves nothing to grade: that is the error.
    with pytest.raises(UsageError, match="no notebooks"):
        collect((archive,), tmp_path / "unpacked")


def test_members_that_cannot_be_unpacked_get_a_row_saying_why(
        tmp_path: Path) -> None:
    archive = tmp_path / "week2.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ana/x.ipynb", "{}")
        bundle.writestr("ana/./x.ipynb", "{} ")  # the same file once unpacked
        bundle.writestr("bea/" + "b" * 300 + ".ipynb", "{}")  # too long a name
        bundle.writestr("cy/x.ipynb", "{}")
        bundle.writestr("cy/x.ipynb/y.ipynb", "{}")  # under a file
        bundle.writestr("DEE/X.IPYNB", "{}")
        bundle.writestr("/abs/x.ipynb", "{}")
    unpack = tmp_path / "unpacked"
    unpack.mkdir()
    found = collect((archive,), unpack)
    assert [(s.student, s.shown) for s in found if s.problem is None] == [
        ("DEE", archive / "DEE/X.IPYNB"), ("ana", archive / "ana/x.ipynb"),
        ("cy", archive / "cy/x.ipynb")]
    assert (unpack / "0_week2" / "ana" / "x.ipynb").read_text() == "{}"
    said = [(s.student, s.problem) for s in found if s.problem]
    assert said == [
        ("ana", f"{archive}: ana/./x.ipynb: not graded: another member has the "
         "same name (or the same once `./` is dropped); unpack the zip and look"),
        ("bea", f"{archive}: bea/{'b' * 300}.ipynb: not graded: it cannot be "
         "unpacked here (File name too long); rename it"),
        ("cy", f"{archive}: cy/x.ipynb/y.ipynb: not graded: it cannot be "
         "unpacked here (File exists); rename it"),
        ("abs", f"{archive}: /abs/x.ipynb: not graded: its path leads out of the "
         "archive's folder; unpack the zip and grade the file on its own")]
    # Named inside the zip, even when the member's name is absolute.
    assert str(found[-1].path) == f"{archive}/abs/x.ipynb"


def test_a_damaged_member_gets_a_row_and_its_neighbours_are_unpacked(
        tmp_path: Path) -> None:
    archive = tmp_path / "week2.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("ana/x.ipynb", "{" + " " * 5000 + "}")
        bundle.writestr("bo/x.ipynb", "{}")
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"ana/x.ipynb") + len(b"ana/x.ipynb")
    raw[start:start + 4] = b"\xff\xff\xff\xff"  # the compressed data's start
    archive.write_bytes(bytes(raw))
    found = collect((archive,), tmp_path / "unpacked")
    assert [(s.student, s.problem) for s in found] == [
        ("bo", None),
        ("ana", f"{archive}: ana/x.ipynb: not graded: its data cannot be read "
         "(Error -3 while decompressing data: invalid block type); ask for the "
         "file again")]
    assert not (tmp_path / "unpacked" / "0_week2" / "ana" / "x.ipynb").exists()


def test_links_in_a_folder_are_said_and_not_graded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Unpacked with unzip, a student's link would get another's grade.
    for student in ("alice", "mallory"):
        (tmp_path / student).mkdir()
    (tmp_path / "alice" / "hw.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / "mallory" / "hw.ipynb").symlink_to("../alice/hw.ipynb")
    (tmp_path / "alice" / ".ipynb").write_text("{}", encoding="utf-8")
    with caplog.at_level("WARNING", logger="grader"):
        found = collect((tmp_path,), tmp_path / "unpacked")
    assert [s.path.relative_to(tmp_path).as_posix() for s in found] == [
        "alice/.ipynb", "alice/hw.ipynb"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/mallory/hw.ipynb: not graded: a symbolic link (to "
        "../alice/hw.ipynb); a submission must be a file of its own: copy the "
        "file there if it is one"]


def test_a_member_over_the_size_limit_is_not_unpacked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A small zip of a huge member would otherwise fill the disk, only for
    # the file to be refused as too large.
    monkeypatch.setattr("grader.collecting.MAX_BYTES", 1000)
    archive = tmp_path / "week2.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("ana/x.ipynb", b" " * 5000)
    [found] = collect((archive,), tmp_path / "unpacked")
    # Its size, for the reading stage's "too large", and none of its data.
    assert found.path.read_bytes() == bytes(5000)


@pytest.mark.parametrize("members, students", [
    # `zip -r subs.zip subs/`: the folder around them is nobody's.
    (["subs/alice/x.ipynb", "subs/bob/x.ipynb"], ["alice", "bob"]),
    (["subs/alice/week2/x.ipynb", "subs/bob/week2/x.ipynb"], ["alice", "bob"]),
    # One student's folder with an assignment folder in it: theirs.
    (["alice/week2/x.ipynb"], ["alice"]),
    (["alice/week2/x.ipynb", "bob/week2/x.ipynb"], ["alice", "bob"]),
    (["course/submitted/cy/w2/x.ipynb", "course/submitted/di/w2/x.ipynb"],
     ["cy", "di"]),
])
def test_the_folder_wrapping_a_zip_names_no_student(
        tmp_path: Path, members: list[str], students: list[str]) -> None:
    archive = tmp_path / "subs.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for member in members:
            bundle.writestr(member, "{}")
    found = collect((archive,), tmp_path / "unpacked")
    assert [s.student for s in found] == students


def test_a_file_named_twice_is_collected_once_and_zips_in_folders_are_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "week2"
    folder.mkdir()
    notebook = folder / "ana.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    archive = folder / "more.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("bo/x.ipynb", "{}")
    with caplog.at_level("WARNING", logger="grader"):
        found = collect((folder, notebook, archive, archive),
                        tmp_path / "unpacked")
    assert [str(s.shown or s.path) for s in found] == [
        str(notebook), f"{archive}/bo/x.ipynb"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{archive}: not opened: zips are unpacked only when named on the "
        "command line; name it there to grade what it holds",
        f"{notebook}: named more than once; graded once",
        f"{archive}/bo/x.ipynb: named more than once; graded once"]
