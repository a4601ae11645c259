"""Atomic file writes (the new content replaces the old in one step, or not at all) and JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None] | bytes) -> Path:
    """Call ``write(file)`` (or write the bytes given) on a temporary file beside ``path``, fsync
    it, then ``os.replace`` it onto ``path`` (a crash leaves either the old or the new file)."""
    if isinstance(write, bytes | bytearray | memoryview):
        payload = write

        def write(handle: IO[bytes]) -> None:
            handle.write(payload)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    """JSON with NaN written as null (strict JSON has no NaN)."""
    text = json.dumps(_finite(value), indent=2, default=_jsonable, allow_nan=False)
    write_text(path, text + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line (NaN written as null)."""
    text = "".join(
        json.dumps(_finite(row), default=_jsonable, allow_nan=False) + "\n" for row in rows
    )
    write_text(path, text)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite(value: Any) -> Any:
    """``value`` with numpy/torch scalars as Python numbers and NaN/inf as None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
