"""Stage 0: find the submissions in what an instructor hands over, and whose
they are.

Layouts understood, in a folder or inside a zip of it:

* nbgrader's `submitted/<student>/<assignment>/<notebook>.ipynb`;
* one folder per student: `<student>/<notebook>.ipynb` (or deeper: the
  folder two levels above the notebook is taken as the student);
* an LMS bulk download, flat, whose names carry the student:
  `lastname_firstname_12345_67890_<notebook>.ipynb`;
* a flat folder of notebooks: the file name (without .ipynb) is the student.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from grader.errors import UsageError
from grader.reading import MAX_BYTES, display_path, printable

log = logging.getLogger("grader")

SKIPPED_FOLDERS = {".ipynb_checkpoints", "__MACOSX", ".git"}
LMS_NAME = re.compile(
    r"^(?P<student>[^\W\d_][\w-]*?_[^\W\d_][\w-]*?)_(?P<id>\d+)_\d+_.+$")
#: Limits on what a zip may unpack to.
ZIP_MEMBERS = 200_000
ZIP_TOTAL_BYTES = 8 * 2**30


@dataclass(frozen=True)
class Submission:
    path: Path
    #: Who submitted it, from the layout (see the module's docstring).
    student: str
    #: The name it is shown and stored under, where that is not `path`:
    #: a zip's member is read from a temporary folder, but named after the
    #: zip (`subs.zip/alice/x.ipynb`), the same in every run.
    shown: Path | None = None
    #: Why it cannot be graded, for a zip's member that could not be
    #: unpacked as itself (`path` then names it inside the zip, and no
    #: file is there): it still gets a row, saying so.
    problem: str | None = None


def collect(paths: tuple[Path, ...], unpack_to: Path | None) -> list[Submission]:
    """Submissions named on the command line, in folders or in zips (unpacked
    into `unpack_to`, which must be given if any path is a zip)."""
    found: list[Submission] = []
    for path in paths:
        if path.is_file() and path.suffix.lower() == ".zip":
            assert unpack_to is not None, "a zip needs a folder to unpack to"
            folder = unpack_to / f"{len(found)}_{path.stem}"
            try:
                left_out = _unpack(path, folder)
            except _UnreadableZip as exc:
                # The other paths are still graded; alone, it leaves no
                # notebook to grade, which is then the error.
                log.warning("%s", exc)
                continue
            found.extend(Submission(s.path, s.student,
                                    path / s.path.relative_to(folder))
                         for s in _in_folder(folder))
            found.extend(
                # Joined as text: an absolute member name would replace
                # the zip's path, joined as a path.
                Submission(Path(f"{path}/{name}"), student_of(_inside(name)),
                           problem=f"{display_path(path)}: {printable(name)}: "
                                   f"not graded: {problem}")
                for name, problem in left_out)
        elif path.is_dir() and path.suffix != ".ipynb":
            found.extend(_in_folder(path))
        elif path.exists() or path.is_symlink():
            found.append(Submission(path, student_of(PurePosixPath(path.name))))
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not found:
        raise UsageError(
            "no notebooks (.ipynb) found in " + ", ".join(str(p) for p in paths))
    return _once_each(found)


def _once_each(found: list[Submission]) -> list[Submission]:
    """Each file once, though named twice (a folder and a notebook in it,
    or the same path given again): graded twice, it would count twice."""
    seen: set[Path] = set()
    kept = []
    for submission in found:
        key = (submission.shown or submission.path).absolute()
        # A member left out for sharing a name keeps its row: it says so.
        if key in seen and submission.problem is None:
            log.warning("%s: named more than once; graded once",
                        display_path(submission.shown or submission.path))
            continue
        seen.add(key)
        kept.append(submission)
    return kept


def _in_folder(folder: Path) -> list[Submission]:
    found: list[Path] = []
    for candidate in sorted(folder.rglob("*")):
        relative = candidate.relative_to(folder)
        # Any case of the suffix (NOTEBOOK.IPYNB from some systems); a
        # folder named like a notebook is not one.
        name = candidate.name.lower()
        if not name.endswith((".ipynb", ".zip")) \
                or SKIPPED_FOLDERS & set(relative.parts) or candidate.is_dir():
            continue
        if name.endswith(".zip"):
            log.warning("%s: not opened: zips are unpacked only when named on "
                        "the command line; name it there to grade what it "
                        "holds", display_path(candidate))
            continue
        if candidate.is_symlink():
            # Unpacked with `unzip`, a student's link to another's notebook
            # would get that notebook's grade.
            log.warning("%s: not graded: a symbolic link (to %s); a "
                        "submission must be a file of its own: copy the file "
                        "there if it is one", display_path(candidate),
                        printable(os.readlink(candidate)))
            continue
        found.append(candidate)
    wrapper = _wrapping_folder([path.relative_to(folder) for path in found])
    return [Submission(path, student_of(PurePosixPath(
                path.relative_to(folder / wrapper).as_posix())))
            for path in found]


def _wrapping_folder(relatives: list[Path]) -> str:
    """The one folder every notebook is in, above the students' own (a zip
    made with `zip -r subs.zip subs/`): its name is nobody's. "" if none.
    With a single student's folder inside it, it may be that student's."""
    if not relatives or any(len(path.parts) < 3 for path in relatives):
        return ""
    tops = {path.parts[0] for path in relatives}
    students = {path.parts[1] for path in relatives}
    return tops.pop() if len(tops) == 1 and len(students) > 1 else ""


def student_of(relative: PurePosixPath) -> str:
    """Who submitted the notebook at `relative` (see the module's
    docstring), printable whatever the names hold."""
    return printable(_student_of(relative))


def _student_of(relative: PurePosixPath) -> str:
    """The student a notebook belongs to, from its path inside the batch."""
    # Names may hold bytes that are not UTF-8: keep them printable.
    relative = PurePosixPath(os.fsencode(str(relative)).decode("utf-8",
                                                               "backslashreplace"))
    parts = relative.parts
    if "submitted" in parts[:-1]:
        after = parts[parts.index("submitted") + 1:]
        if len(after) >= 2:
            return after[0]
    if len(parts) >= 3:
        return parts[-3]
    if len(parts) == 2:
        return parts[0]
    stem = relative.name
    if stem.lower().endswith(".ipynb"):
        stem = stem[: -len(".ipynb")] or stem  # ".ipynb" alone keeps its name
    match = LMS_NAME.match(stem)
    if match:
        return f"{match.group('student')}_{match.group('id')}"
    return stem


def _inside(name: str) -> PurePosixPath:
    """A member's name without what would lead out of the zip's folder (a
    leading /, ..), for telling whose it is."""
    return PurePosixPath(*[part for part in PurePosixPath(name).parts
                           if part not in ("/", "..", ".")] or ["?"])


class _UnreadableZip(Exception):
    pass


def _unpack(archive: Path, folder: Path) -> list[tuple[str, str]]:
    """Unpack the notebooks of a zip. A member that cannot be unpacked as
    itself (a path leaving the folder, a name the file system refuses, a
    second member of the same name, damaged data) is skipped: its name and
    what is wrong are returned; the rest are unpacked."""
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError,
            NotImplementedError) as exc:  # UnicodeDecodeError is a ValueError
        raise _UnreadableZip(
            f"{display_path(archive)}: not graded: not a readable zip file "
            f"({printable(str(exc))[:200]}); check the download") from None
    with bundle:
        members = [m for m in bundle.infolist()
                   if m.filename.lower().endswith(".ipynb") and not m.is_dir()]
        if len(members) > ZIP_MEMBERS or \
                sum(m.file_size for m in members) > ZIP_TOTAL_BYTES:
            raise _UnreadableZip(f"{display_path(archive)}: not graded: too many "
                                 "or too large notebooks inside; split the archive")
        left_out = []
        for member in members:
            problem = _unpack_member(bundle, member, folder)
            if problem:
                left_out.append((member.filename, problem))
        return left_out


def _unpack_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo,
                   folder: Path) -> str | None:
    """Unpack one member into `folder`; what is wrong with it, if anything."""
    name = PurePosixPath(member.filename)
    if name.is_absolute() or ".." in name.parts:
        return ("its path leads out of the archive's folder; unpack the zip "
                "and grade the file on its own")
    target = folder.joinpath(*name.parts)
    # os.path: a name too long for the file system is no error here.
    if os.path.lexists(target):
        return ("another member has the same name (or the same once `./` "
                "is dropped); unpack the zip and look")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if member.file_size > MAX_BYTES:
            # Too large to grade whatever it holds: a file of that size with
            # nothing written (sparse) gets the reading stage's message, at
            # no cost; unpacked, a small zip could fill the disk.
            with target.open("xb") as sink:
                sink.truncate(member.file_size)
            return None
        with bundle.open(member) as source, target.open("xb") as sink:
            shutil.copyfileobj(_capped(source), sink)
    except OSError as exc:
        _remove_partial(target)
        return f"it cannot be unpacked here ({exc.strerror or exc}); rename it"
    except Exception as exc:  # noqa: BLE001  (zlib, lzma, EOF, encryption...)
        # Damaged or encrypted data: whatever was half written is removed,
        # so that no truncated copy is graded.
        _remove_partial(target)
        reason = printable(str(exc) or type(exc).__name__)[:200]
        return f"its data cannot be read ({reason}); ask for the file again"
    return None


def _remove_partial(target: Path) -> None:
    if os.path.isfile(target):
        target.unlink()


class _capped:
    """A reader that stops at MAX_BYTES + 1 bytes (the reading stage then
    reports the file as too large) whatever the zip claims."""

    def __init__(self, source: object) -> None:
        self.source = source
        self.left = MAX_BYTES + 1

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.source.read(size)  # type: ignore[attr-defined]
        self.left -= len(data)
        return data
