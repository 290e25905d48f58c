"""Reading: every kind of bad file becomes a one-line error naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from grader import reading
from grader.errors import SubmissionError
from grader.reading import read_notebook


def _notebook_text(**metadata: object) -> str:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_code_cell("def f():\n    return 1"),
    ])
    nb.metadata.update(metadata)
    return nbformat.writes(nb)


def test_reads_code_cells_with_their_notebook_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ok.ipynb"
    path.write_text(_notebook_text(), encoding="utf-8")
    notebook = read_notebook(path)
    assert notebook.nbformat == 4
    assert [c.number for c in notebook.code_cells] == [2, 3]
    assert notebook.code_cells[1].source == "def f():\n    return 1"
    assert len(notebook.digest) == 64


def test_unknown_metadata_and_missing_optional_keys_are_fine(tmp_path: Path) -> None:
    content = json.loads(_notebook_text(kernelspec={"name": "conda-env-x"},
                                        weird={"a": [1, 2]}))
    for cell in content["cells"]:
        cell.pop("id", None)
        cell.pop("metadata", None)
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(content), encoding="utf-8")
    assert len(read_notebook(path).code_cells) == 2


def test_nbformat_3_is_converted(tmp_path: Path) -> None:
    v3 = nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=[
        nbformat.v3.new_code_cell(input="x = 1\ny = 2"),
    ])])
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.writes(v3, version=3), encoding="utf-8")
    notebook = read_notebook(path)
    assert notebook.nbformat == 3
    assert notebook.code_cells[0].source == "x = 1\ny = 2"


BAD_FILES = [
    ("truncated.ipynb", _notebook_text()[:200].encode(), "invalid_json", "truncated"),
    ("empty.ipynb", b"", "empty", "empty"),
    ("blank.ipynb", b"  \n\n", "empty", "empty"),
    ("page.ipynb", b"<!DOCTYPE html><html><body>nb</body></html>", "not_a_notebook",
     "HTML page"),
    ("print.ipynb", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not_a_notebook", "PDF"),
    ("blob.ipynb", b"\x00\x01\x02binary\x00", "not_a_notebook", "binary"),
    ("latin1.ipynb", '{"nbformat": 4, "cells": ["\xe9"]}'.encode("latin-1"),
     "not_utf8", "UTF-8"),
    ("export.ipynb", b"#!/usr/bin/env python\nimport numpy as np\n", "not_a_notebook",
     "Python script"),
    ("list.ipynb", b"[1, 2, 3]", "not_a_notebook", "not a Jupyter notebook"),
    ("future.ipynb", b'{"nbformat": 5, "cells": []}', "unsupported_format",
     "nbformat 5"),
]


@pytest.mark.parametrize("name, content, kind, words", BAD_FILES)
def test_bad_files_get_a_kind_and_a_one_line_message(
    tmp_path: Path, name: str, content: bytes, kind: str, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SubmissionError) as caught:
        read_notebook(path)
    assert caught.value.kind == kind
    message = caught.value.message
    assert message.startswith(str(path) + ": ")
    assert words in message
    assert "\n" not in message


def test_a_folder_named_like_a_notebook(tmp_path: Path) -> None:
    folder = tmp_path / "x.ipynb"
    folder.mkdir()
    with pytest.raises(SubmissionError) as caught:
        read_notebook(folder)
    assert caught.value.kind == "not_a_file"


def test_a_symlink_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop.ipynb"
    os.symlink(loop, loop)
    with pytest.raises(SubmissionError) as caught:
        read_notebook(loop)
    assert caught.value.kind == "unreadable"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.ipynb"
    path.write_text(_notebook_text(), encoding="utf-8")
    path.chmod(0)
    with pytest.raises(SubmissionError) as caught:
        read_notebook(path)
    assert caught.value.kind == "unreadable"


def test_a_fifo_and_a_device_are_refused_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.ipynb"
    os.mkfifo(fifo)
    zeros = tmp_path / "zeros.ipynb"
    os.symlink("/dev/zero", zeros)
    for path in (fifo, zeros):
        with pytest.raises(SubmissionError) as caught:
            read_notebook(path)
        assert caught.value.kind == "not_a_file"


def test_deeply_nested_json_and_odd_cells(tmp_path: Path) -> None:
    deep = tmp_path / "deep.ipynb"
    deep.write_text('{"nbformat": 4, "cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(SubmissionError) as caught:
        read_notebook(deep)
    assert caught.value.kind == "invalid_json"

    odd = json.loads(_notebook_text())
    odd["cells"] += [1, None, "text"]
    path = tmp_path / "odd_cells.ipynb"
    path.write_text(json.dumps(odd), encoding="utf-8")
    assert len(read_notebook(path).code_cells) == 2


def test_old_v3_files_missing_outputs_and_metadata(tmp_path: Path) -> None:
    content = {"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": [
        {"cell_type": "heading", "level": "one", "source": "Title"},
        {"cell_type": "code", "input": "x = 1", "language": "python"},
        {"cell_type": "code", "input": "y = 2", "outputs": None},
    ]}]}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(content), encoding="utf-8")
    assert [c.source for c in read_notebook(path).code_cells] == ["x = 1", "y = 2"]


def _large_notebook(tmp_path: Path) -> tuple[Path, list[str]]:
    """Over LARGE_BYTES, with outputs that would trip a careless skipper."""
    sources = [
        'x = {"outputs": [1, 2]}  # a key named like the outputs, in code',
        'print("a quote \\" and a bracket ] and a backslash \\\\")',
        "def f():\n    return 1",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    tricky = [
        nbformat.v4.new_output("stream", text='] } [ { "outputs": [ \\ "\n'),
        nbformat.v4.new_output("display_data",
                               data={"image/png": "iVBOR" + "A" * 300_000}),
        nbformat.v4.new_output("error", ename="E", evalue='"', traceback=["\\", "]"]),
    ]
    for cell in nb.cells:
        cell.outputs = tricky
    nb.metadata["outputs"] = [["not", "a", "cell's"]]
    path = tmp_path / "large.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path, sources


def test_a_large_notebook_is_read_without_its_outputs_and_the_same(
    tmp_path: Path
) -> None:
    path, sources = _large_notebook(tmp_path)
    raw = path.read_bytes()
    assert len(raw) > reading.LARGE_BYTES
    skipped = reading._parse_without_outputs(raw.decode("utf-8"))
    assert skipped is not None
    assert [cell["outputs"] for cell in skipped["cells"]] == [[], [], []]
    assert skipped["metadata"]["outputs"] == []
    full = json.loads(raw)
    for cell in full["cells"]:
        cell["outputs"] = []
    full["metadata"]["outputs"] = []
    assert skipped == full
    assert [c.source for c in read_notebook(path).code_cells] == sources


def test_a_large_truncated_notebook_still_gets_its_error(tmp_path: Path) -> None:
    path, _ = _large_notebook(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    text = path.read_bytes().decode("utf-8", "ignore")
    assert reading._parse_without_outputs(text) is None
    with pytest.raises(SubmissionError) as caught:
        read_notebook(path)
    assert caught.value.kind == "invalid_json"
    assert "looks truncated" in caught.value.message


def test_a_large_notebook_that_is_not_utf8_gets_the_same_error(tmp_path: Path) -> None:
    path, _ = _large_notebook(tmp_path)
    raw = path.read_bytes()
    # A stray Latin-1 byte inside an output (an image), where grading never looks.
    damaged = raw.replace(b"iVBOR", b"iV\xf6OR", 1)
    assert damaged != raw
    path.write_bytes(damaged)
    with pytest.raises(SubmissionError) as caught:
        read_notebook(path)
    assert caught.value.kind == "not_utf8"


def test_a_file_is_read_whole_when_it_holds_more_than_its_size_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc files say they are empty and are not: like a file that grows
    # between the look at its size and the reading.
    status = Path("/proc/self/status")
    if not status.is_file() or status.stat().st_size != 0:
        pytest.skip("needs Linux's /proc")
    data = reading.read_submission_bytes(status)
    assert data.startswith(b"Name:") and b"\nPid:" in data
    monkeypatch.setattr(reading, "MAX_BYTES", 64)
    with pytest.raises(SubmissionError) as raised:
        reading.read_submission_bytes(status)
    assert raised.value.kind == "too_large"
    assert str(raised.value).startswith("/proc/self/status: is 0 MB, over the 0 MB")
