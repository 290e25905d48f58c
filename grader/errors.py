"""The grader's exceptions.

Two families, kept apart on purpose: a problem with one submission becomes
feedback for that submission and the batch goes on; a problem with the
grader's own set-up (the assignment, the command line) stops the run.
"""

from __future__ import annotations


class GraderError(Exception):
    """Base of every exception the grader raises on purpose."""


class SubmissionError(GraderError):
    """A submission cannot be graded; the batch goes on.

    `kind` is a stable short word for exports (``invalid_json``,
    ``not_a_notebook``, ...); the message names the file and what to do.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class AssignmentError(GraderError):
    """The assignment in `reference/` is malformed: the run stops."""


class UsageError(GraderError):
    """The command line asks for something impossible: exit status 2."""
