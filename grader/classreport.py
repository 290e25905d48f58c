"""The class report: one self-contained HTML page from the gradebook.

Charts are inline SVG, so the page needs no network to view.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from grader import __version__

HISTOGRAM_HEIGHT = 160


def load_results(gradebook: Path) -> list[dict[str, Any]]:
    """The latest result of each file in the gradebook."""
    with sqlite3.connect(gradebook) as db:
        rows = db.execute(
            "SELECT path, student, result_json FROM results ORDER BY graded_at"
        ).fetchall()
    latest: dict[str, dict[str, Any]] = {}
    for path, student, raw in rows:
        result = json.loads(raw)
        result["student"] = student or result.get("student") or Path(path).stem
        latest[path] = result
    return [latest[path] for path in sorted(latest)]


def render(results: list[dict[str, Any]], title: str) -> str:
    graded = [r for r in results if r["status"] == "graded"]
    max_score = max((r["max_score"] for r in results), default=0)
    environment = Environment(loader=PackageLoader("grader", "templates"),
                              autoescape=select_autoescape(["html", "j2"]))
    return environment.get_template("report.html.j2").render(
        title=title,
        count=len(results),
        graded=len(graded),
        mean=f"{sum(r['score'] for r in graded) / len(graded):.2f}" if graded else "0",
        max_score=f"{max_score:g}",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        histogram=_histogram(graded),
        mistakes=_mistakes(results),
        functions=_functions(graded),
        students=[_student(r) for r in results],
    )


def _histogram(graded: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(r["score"] for r in graded)
    width, gap = 36, 8
    top = max(counts.values(), default=1)
    bars = []
    for index, score in enumerate(sorted(counts)):
        height = round(HISTOGRAM_HEIGHT * counts[score] / top)
        bars.append({"label": f"{score:g}", "count": counts[score],
                     "x": index * (width + gap) + gap, "w": width,
                     "y": HISTOGRAM_HEIGHT - height + 20, "h": height})
    return {"bars": bars, "height": HISTOGRAM_HEIGHT + 20,
            "width": max(len(bars) * (width + gap) + gap, 200)}


def _mistakes(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    for result in results:
        counts.update({d["id"] for f in result.get("functions", {}).values()
                       for d in f["diagnoses"]})
    top = max(counts.values(), default=1)
    return [{"id": mistake, "count": count, "width": round(400 * count / top)}
            for mistake, count in counts.most_common()]


def _functions(graded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = sorted({name for r in graded for name in r["functions"]})
    rows = []
    for name in names:
        total = sum(1 for r in graded if name in r["functions"])
        passed = sum(1 for r in graded if r["functions"].get(name, {}).get("passed"))
        rows.append({"name": name, "passed": passed, "total": total,
                     "rate": f"{100 * passed / total:.0f}%" if total else "-"})
    return rows


def _student(result: dict[str, Any]) -> dict[str, Any]:
    functions = [{"name": name, **f} for name, f in result.get("functions", {}).items()]
    return {
        "student": result["student"],
        "path": result["path"],
        "score": f"{result['score']:g}",
        "max_score": f"{result['max_score']:g}",
        "error": (result.get("error") or {}).get("message"),
        "ids": sorted({d["id"] for f in functions for d in f["diagnoses"]}),
        "functions": functions,
    }
