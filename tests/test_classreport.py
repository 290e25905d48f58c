"""The HTML class report, loaded in headless Chromium: it renders, the charts
are there and its numbers are the gradebook's."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import SAMPLES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("report")
    gradebook = folder / "gb.sqlite"
    subprocess.run([sys.executable, "-m", "grader", "grade", str(SAMPLES), "-q",
                    "--gradebook", str(gradebook)], check=True, capture_output=True)
    page = folder / "report.html"
    subprocess.run([sys.executable, "-m", "grader", "report", "--gradebook",
                    str(gradebook), "-o", str(page)], check=True, capture_output=True)
    return page, gradebook


def gradebook_counts(gradebook: Path) -> tuple[Counter[str], Counter[str]]:
    with sqlite3.connect(gradebook) as db:
        scores = Counter(f"{score:g}" for (score,) in db.execute(
            "SELECT score FROM results WHERE status = 'graded'"))
        mistakes = Counter(dict(db.execute(
            "SELECT diagnosis_id, count(DISTINCT path) FROM diagnoses GROUP BY 1")))
    return scores, mistakes


def test_the_page_needs_no_network(report: tuple[Path, Path]) -> None:
    html = report[0].read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"https?://", html)
    assert "<script" not in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(.ci/run installs Debian's chromium)")
def test_rendered_in_chromium_the_numbers_match_the_gradebook(
    report: tuple[Path, Path], tmp_path: Path
) -> None:
    page, gradebook = report
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = done.stdout
    assert "<h1>Class report</h1>" in dom

    scores, mistakes = gradebook_counts(gradebook)
    bars = dict(re.findall(r'class="bar" data-score="([^"]+)" data-count="(\d+)"', dom))
    assert {k: int(v) for k, v in bars.items()} == dict(scores)
    shown = dict(re.findall(r'class="mistake" data-id="([^"]+)" data-count="(\d+)"',
                            dom))
    assert {k: int(v) for k, v in shown.items()} == dict(mistakes)
    assert shown["loss.missing_epsilon"] == "3"
    assert '<span id="mean-score">14.33</span>' in dom
    assert dom.count('class="student"') == 19


def test_a_file_that_could_not_be_read_shows_no_score(
        report: tuple[Path, Path]) -> None:
    html = report[0].read_text(encoding="utf-8")
    row = re.search(r"<tr><td><a [^>]*>truncated</a></td>.*?</tr>", html, re.DOTALL)
    assert row is not None
    assert '<td class="num">-</td><td class="fail">not graded: could not be read</td>' \
        in row.group(0)
    assert "<h3>truncated: not graded</h3>" in html
