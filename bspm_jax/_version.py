"""The library's version (one place: the package, saved models and run records read it here)."""

__version__ = "0.1.0"
