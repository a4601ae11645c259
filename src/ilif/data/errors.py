"""The error type of the data package: every bad input (missing root, truncated or corrupted
file, malformed label file) surfaces as a :class:`DatasetError` naming the file and the fix."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset or data file that cannot be used as it is (the message says which and why)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset root, folder or file that does not exist where it is expected."""
