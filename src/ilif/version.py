"""The package version (one place: the CLI, run records and ``ilif.__version__`` read it)."""

__version__ = "0.1.0"
