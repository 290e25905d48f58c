"""grader: grade Jupyter notebook assignments and explain every mistake."""

__version__ = "0.1.0"


def check(target):  # type: ignore[no-untyped-def]
    """Self-check a graded function or notebook on the public cases."""
    from grader.selfcheck import check as run_check

    return run_check(target)
