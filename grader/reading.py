"""Stage 1: read a submission file into its code cells.

Only what grading needs is kept: the code cells' sources and where they sit
in the notebook. Anything that is not a readable notebook becomes a
`SubmissionError` with a one-line message naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from grader.errors import SubmissionError

log = logging.getLogger(__name__)

#: Bytes looked at to recognise PDFs, HTML pages and binary files.
SNIFF_BYTES = 2048
#: Largest notebook accepted; course notebooks are well under 10 MB.
MAX_BYTES = 200 * 2**20
#: From this size on, the outputs' bytes are skipped before parsing.
LARGE_BYTES = 256 * 2**10
RESUBMIT = "re-save the notebook from Jupyter (File > Save) and submit the .ipynb again"


@dataclass(frozen=True)
class CodeCell:
    #: 1-based position among all cells of the notebook, as students count.
    number: int
    source: str


@dataclass(frozen=True)
class Notebook:
    path: Path
    #: nbformat major version of the file as submitted (3 is converted).
    nbformat: int
    code_cells: tuple[CodeCell, ...]
    #: SHA-256 of the file's bytes: the submission's identity for resuming.
    digest: str


def read_notebook(path: Path) -> Notebook:
    """Read `path`; raise SubmissionError when it is not a usable notebook."""
    raw = read_submission_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    # Decoding checks the whole file (PDF, binary, UTF-8, HTML) for every
    # size; only the JSON parse of a large file skips the outputs, whose
    # damage (a bad escape in a log, say) is then not noticed.
    text = _decode(path, raw)
    content = None
    if len(raw) >= LARGE_BYTES:
        content = _parse_without_outputs(text)
    if content is None:
        content = _parse_json(path, text)
    notebook = _to_v4(path, content)

    cells = tuple(
        CodeCell(number=index, source=_source_text(cell.get("source", "")))
        for index, cell in enumerate(notebook.get("cells", []), start=1)
        if isinstance(cell, dict) and cell.get("cell_type") == "code"
    )
    log.debug("%s: nbformat %s, %d code cells", path, content["nbformat"], len(cells))
    return Notebook(path, int(content["nbformat"]), cells, digest)


def read_submission_bytes(path: Path) -> bytes:
    """The file's bytes; only regular files, at most MAX_BYTES of them."""
    try:
        info = path.stat()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SubmissionError(
            "unreadable", f"{path}: cannot be read ({reason}); check the file"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise SubmissionError(
            "not_a_file",
            f"{path}: is a folder, not a notebook file; submit the .ipynb file itself",
        )
    if not stat.S_ISREG(info.st_mode):
        raise SubmissionError(
            "not_a_file",
            f"{path}: is not a regular file (a device, pipe or socket); "
            "submit the .ipynb file itself",
        )
    if info.st_size > MAX_BYTES:
        raise _too_large(path, info.st_size)
    try:
        with path.open("rb") as handle:
            # Asked for the size it has (a byte more, to see it grow): asked
            # for the limit, Python sets aside 200 MB for every file and
            # takes milliseconds to give back what was not used.
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += handle.read(MAX_BYTES + 1 - len(data))
    except PermissionError:
        raise SubmissionError(
            "unreadable",
            f"{path}: permission denied; make the file readable for the grader",
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SubmissionError(
            "unreadable", f"{path}: cannot be read ({reason}); check the file"
        ) from None
    if len(data) > MAX_BYTES:  # it grew while it was read
        raise _too_large(path, len(data))
    return data


def _too_large(path: Path, size: int) -> SubmissionError:
    return SubmissionError(
        "too_large",
        f"{path}: is {size // 2**20} MB, over the {MAX_BYTES // 2**20} MB "
        "limit; clear the outputs (Cell > All Output > Clear) and save again",
    )


def display_path(path: Path) -> str:
    """The path as text that can always be printed and stored (any bytes,
    and no control characters: see `printable`)."""
    return printable(os.fsencode(path).decode("utf-8", "backslashreplace"))


#: Control characters, shown escaped: a file name is the student's to
#: choose, and one carrying a terminal's escape sequences or a line break
#: could clear the screen or print a line of its own in the report.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(32), *range(127, 160))}


#: Characters that change how the rest is shown, or show as nothing:
#: format characters (right-to-left overrides, zero-width spaces) and line
#: and paragraph separators. "\u202eecila" would read "alice".
_INVISIBLE = {"Cf", "Zl", "Zp"}


def printable(text: str) -> str:
    """`text` with its control characters written as \\xNN, and its
    invisible ones as \\uNNNN."""
    text = text.translate(_CONTROLS)
    if text.isascii():
        return text
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _INVISIBLE
                   else c for c in text)


def _decode(path: Path, raw: bytes) -> str:
    head = raw[:SNIFF_BYTES]
    if not raw.strip():
        raise SubmissionError(
            "empty", f"{path}: the file is empty; {RESUBMIT}"
        )
    if head.startswith(b"%PDF"):
        raise SubmissionError(
            "not_a_notebook",
            f"{path}: is a PDF, not a notebook; submit the .ipynb file, "
            "not a printout of it",
        )
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SubmissionError(
            "not_a_notebook",
            f"{path}: is a binary file, not a notebook; submit the .ipynb file",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubmissionError(
            "not_utf8",
            f"{path}: is not UTF-8 text (bad byte at offset {exc.start}); "
            f"{RESUBMIT}",
        ) from None
    lowered = text[:SNIFF_BYTES].lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html", "<head", "<?xml")):
        raise SubmissionError(
            "not_a_notebook",
            f"{path}: is an HTML page, not a notebook (saved from the browser?); "
            f"{RESUBMIT}",
        )
    return text


def _parse_json(path: Path, text: str) -> dict[str, Any]:
    try:
        content = json.loads(text)
    except RecursionError:
        raise SubmissionError(
            "invalid_json",
            f"{path}: the notebook JSON is nested too deeply to be a notebook; "
            f"{RESUBMIT}",
        ) from None
    except json.JSONDecodeError as exc:
        if _looks_like_python(text):
            raise SubmissionError(
                "not_a_notebook",
                f"{path}: is a Python script named .ipynb; submit the notebook "
                "itself (File > Save in Jupyter), not an export",
            ) from None
        truncated = not text.rstrip().endswith("}")
        reason = "the file ends early, it looks truncated" if truncated else exc.msg
        raise SubmissionError(
            "invalid_json",
            f"{path}: is not valid notebook JSON ({reason}, line {exc.lineno} "
            f"column {exc.colno}); {RESUBMIT}",
        ) from None

    if not isinstance(content, dict) or "nbformat" not in content:
        raise SubmissionError(
            "not_a_notebook",
            f"{path}: is JSON but not a Jupyter notebook (no 'nbformat' field); "
            "submit the .ipynb file of your assignment",
        )
    return content


_LIST_VALUE = re.compile(r"\s*:\s*\[")
_STRUCTURE = re.compile(r'[\[\]{}"]')


def _parse_without_outputs(text: str) -> dict[str, Any] | None:
    """The notebook with every "outputs" list emptied before parsing.

    Images and long logs in the outputs are most of a large notebook's
    bytes and none of what grading reads; skipping them spares building
    megabytes of strings. None when the file is not plainly a notebook:
    the full parse then says what is wrong with it.
    """
    pieces = []
    kept_from = position = 0
    # Quotes inside JSON strings are escaped, so an unescaped "outputs"
    # followed by a colon is a key.
    while (key := text.find('"outputs"', position)) != -1:
        value = _LIST_VALUE.match(text, key + len('"outputs"'))
        if value is None:
            position = key + 1
            continue
        opening = value.end() - 1
        closing = _end_of_value(text, opening)
        if closing is None:
            return None  # unbalanced: a truncated file
        pieces += [text[kept_from:opening], "[]"]
        kept_from = position = closing
    pieces.append(text[kept_from:])
    try:
        content = json.loads("".join(pieces))
    except (ValueError, RecursionError):
        return None
    return content if isinstance(content, dict) and "nbformat" in content else None


def _end_of_value(text: str, opening: int) -> int | None:
    """Where the list or object opening at `opening` ends, strings skipped
    whole (a base64 image is one long string)."""
    depth = 0
    position = opening
    while (found := _STRUCTURE.search(text, position)) is not None:
        char = text[found.start()]
        if char == '"':
            position = _end_of_string(text, found.end())
            if position is None:
                return None
            continue
        depth += 1 if char in "[{" else -1
        position = found.end()
        if depth == 0:
            return position
    return None


def _end_of_string(text: str, content_start: int) -> int | None:
    position = content_start
    while (quote := text.find('"', position)) != -1:
        backslashes = 0
        while quote - backslashes > content_start \
                and text[quote - backslashes - 1] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return quote + 1
        position = quote + 1
    return None


def _to_v4(path: Path, content: dict[str, Any]) -> Any:
    major = content.get("nbformat")
    if major == 4:
        if not isinstance(content.get("cells"), list):
            raise SubmissionError(
                "not_a_notebook",
                f"{path}: nbformat 4 notebook without a list of cells; {RESUBMIT}",
            )
        return content
    if major == 3:
        _repair_v3(content)
        try:
            # reads() rejoins v3's line lists before converting; validation
            # problems are kept, not raised: old files often fail the schema.
            converted = nbformat.reads(
                json.dumps(content), as_version=4, capture_validation_error={}
            )
        except Exception as exc:  # nbformat raises many types on bad v3
            raise SubmissionError(
                "not_a_notebook",
                f"{path}: nbformat 3 notebook that cannot be converted "
                f"({type(exc).__name__}); {RESUBMIT}",
            ) from None
        return converted
    raise SubmissionError(
        "unsupported_format",
        f"{path}: nbformat {major!r} is not supported (3 and 4 are); "
        "open it in a current Jupyter and save it again",
    )


def _repair_v3(content: dict[str, Any]) -> None:
    """Fill what old files often lack, so that conversion does not fail on it."""
    if not isinstance(content.get("metadata"), dict):
        content["metadata"] = {}
    worksheets = content.get("worksheets")
    if not isinstance(worksheets, list):
        content["worksheets"] = [{"cells": [], "metadata": {}}]
        return
    for sheet in worksheets:
        if not isinstance(sheet, dict):
            continue
        sheet["cells"] = [c for c in sheet.get("cells") or [] if isinstance(c, dict)]
        for cell in sheet["cells"]:
            if cell.get("cell_type") == "code" and not isinstance(cell.get("outputs"),
                                                                  list):
                cell["outputs"] = []
            if cell.get("cell_type") == "heading" and not isinstance(cell.get("level"),
                                                                     int):
                cell["level"] = 1


def _source_text(source: Any) -> str:
    if isinstance(source, list):
        return "".join(str(part) for part in source)
    return str(source)


def _looks_like_python(text: str) -> bool:
    head = text.lstrip()[:SNIFF_BYTES]
    return head.startswith(("#", "import ", "from ", "def ", '"""', "# In["))
