"""The settings of a grading run, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GradingOptions:
    #: "sliced" runs only the imports, graded functions and helpers they
    #: need; "full" runs every code cell top to bottom first.
    mode: str = "sliced"
    #: Keras/TensorFlow to use in the kernel: "auto" (the NumPy stand-in
    #: where the real package is missing), "standin" or "tensorflow".
    backend: str = "auto"
    #: Seconds one notebook cell may run in the full mode.
    cell_timeout: float = 30.0
    #: Seconds one case (one call of a graded function) may run.
    case_timeout: float = 5.0
    #: Seconds the imports and definitions may take in the sliced mode.
    setup_timeout: float = 60.0
    #: Probe the public cases only (a student's self-check).
    public_only: bool = False
    #: Quote public cases as evidence whenever they show the mistake, and
    #: never what a hidden case gave (a forum reply, or feedback students
    #: read and may resubmit after, must not reveal hidden results).
    public_evidence: bool = False
    #: "fork" (a warmed sandbox process forks a child per submission) or
    #: "kernel" (a Jupyter kernel per submission). The full mode always
    #: uses a kernel.
    engine: str = "fork"
    #: Memory a submission may allocate, in MiB, on top of the sandbox's own.
    memory_limit_mb: int = 1024
    #: Folders covered by an empty file system inside the sandbox (the
    #: reference, the submissions, the grader's own folders).
    hidden_paths: tuple[str, ...] = ()

    def result_settings(self) -> str:
        """The settings that can change a verdict, as a gradebook key part."""
        return (f"mode={self.mode} engine={self.engine} backend={self.backend} "
                f"public_only={self.public_only} cell_timeout={self.cell_timeout} "
                f"case_timeout={self.case_timeout} memory={self.memory_limit_mb}"
                f" public_evidence={self.public_evidence}")
