"""grader: grade Jupyter notebook assignments and explain every mistake."""

__version__ = "0.1.0"
