"""The SQLite gradebook: every result is stored as soon as it is known.

A result is keyed by the submission's content hash and path, the grader
version, the assignment's digest and the settings that can change a
verdict, so rerunning a batch skips what is already graded (and regrades
everything after a change of grader or assignment); a file identical to
one graded before takes its result, stored again under its own path. Each
result is one transaction: killing the grader loses at most the submissions
still being graded.

Schema (query it with the `sqlite3` shell):

    results(digest, grader_version, assignment, assignment_digest, settings,
            path, student, status, score, max_score, error_kind,
            error_message, graded_at, result_json)  -- one row per file
    (settings: the options that can change a verdict, e.g. --full)
    diagnoses(digest, path, grader_version, assignment_digest, settings,
              function, diagnosis_id, cell, line, points_lost)
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    digest TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    assignment TEXT NOT NULL,
    assignment_digest TEXT NOT NULL,
    settings TEXT NOT NULL,
    path TEXT NOT NULL,
    student TEXT,
    status TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    error_kind TEXT,
    error_message TEXT,
    graded_at TEXT NOT NULL,
    result_json TEXT NOT NULL,
    PRIMARY KEY (digest, path, grader_version, assignment_digest, settings)
);
CREATE TABLE IF NOT EXISTS diagnoses (
    digest TEXT NOT NULL,
    path TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    assignment_digest TEXT NOT NULL,
    settings TEXT NOT NULL,
    function TEXT NOT NULL,
    diagnosis_id TEXT NOT NULL,
    cell INTEGER,
    line INTEGER,
    points_lost REAL
);
CREATE INDEX IF NOT EXISTS diagnoses_by_result
    ON diagnoses (digest, path, grader_version, assignment_digest, settings);
"""


class Gradebook:
    def __init__(self, path: Path, grader_version: str, assignment: str,
                 assignment_digest: str, settings: str = "") -> None:
        self.path = path
        self.key = (grader_version, assignment_digest, settings)
        self.assignment = assignment
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def has_results(self) -> bool:
        """Whether any result was stored under this grader, assignment and
        settings (when none was, nothing needs looking up)."""
        row = self._db.execute(
            "SELECT 1 FROM results WHERE grader_version = ? AND assignment_digest = ?"
            " AND settings = ? LIMIT 1", self.key).fetchone()
        return row is not None

    def lookup(self, digest: str, path: str) -> dict[str, Any] | None:
        """The stored result (as exported JSON) of a submission, if graded:
        the one stored for `path`, else that of a file with the same
        content (its "path" then differs)."""
        row = self._db.execute(
            "SELECT result_json FROM results WHERE digest = ? AND grader_version = ?"
            " AND assignment_digest = ? AND settings = ?"
            " ORDER BY path = ? DESC LIMIT 1", (digest, *self.key, path),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def record(self, digest: str, result: dict[str, Any], student: str | None) -> None:
        """Store one result atomically, replacing an earlier one for the same key."""
        error = result.get("error") or {}
        key = (digest, result["path"], *self.key)
        where = ("digest = ? AND path = ? AND grader_version = ?"
                 " AND assignment_digest = ? AND settings = ?")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"DELETE FROM diagnoses WHERE {where}", key)
            self._db.execute(f"DELETE FROM results WHERE {where}", key)
            self._db.execute(
                "INSERT INTO results (digest, grader_version, assignment,"
                " assignment_digest, settings, path, student, status, score,"
                " max_score, error_kind, error_message, graded_at, result_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (digest, self.key[0], self.assignment, self.key[1], self.key[2],
                 result["path"], student, result["status"], result["score"],
                 result["max_score"], error.get("kind"), error.get("message"),
                 datetime.now(UTC).isoformat(timespec="seconds"),
                 json.dumps(result)),
            )
            self._db.executemany(
                "INSERT INTO diagnoses (digest, path, grader_version,"
                " assignment_digest, settings, function, diagnosis_id, cell, line,"
                " points_lost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key, name, d["id"], d.get("cell"), d.get("line"),
                  d.get("points_lost"))
                 for name, function in result.get("functions", {}).items()
                 for d in function.get("diagnoses", [])],
            )
