"""Where the fused CPU kernels' compiled code is cached, and the guard that keeps it current.

Numba's ``cache=True`` checks only the source file of the cached function itself: a change in a
helper module that a kernel inlines would leave the stale machine code in use. So the kernels of
this package are cached in a directory named after a hash of every source file of the package
(and the numba version): any change there starts an empty directory, and the kernels compile
again. The directory is ``$ILIF_CACHE_DIR/numba-<hash>``, with ``ILIF_CACHE_DIR`` defaulting to
``$XDG_CACHE_HOME/ilif`` (else ``~/.cache/ilif``); set ``ILIF_CACHE_DIR`` to move it.

Numba reads its cache directory (``numba.config.CACHE_DIR``) when a function is decorated, so
:func:`numba_cache_dir` sets it only around the decoration of the kernels and restores it after.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numba

PACKAGE_DIR = Path(__file__).resolve().parent
_LOCK = threading.RLock()


def source_hash(package_dir: Path) -> str:
    """A hash of the ``*.py`` files under ``package_dir`` (names and contents) and of the numba
    version: 16 hex digits."""
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(Path(package_dir).rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """``$ILIF_CACHE_DIR``, else ``$XDG_CACHE_HOME/ilif``, else ``~/.cache/ilif``."""
    root = os.environ.get("ILIF_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ilif"


@functools.cache
def _hash_of(package_dir: Path) -> str:
    return source_hash(package_dir)


def cache_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """The cache directory of the kernels under ``package_dir``: ``cache_root()/numba-<hash>``."""
    return cache_root() / f"numba-{_hash_of(Path(package_dir).resolve())}"


@contextlib.contextmanager
def numba_cache_dir(package_dir: Path = PACKAGE_DIR) -> Iterator[Path | None]:
    """Within the block, numba functions decorated with ``cache=True`` cache in
    :func:`cache_dir` (``package_dir``); yields that directory, or None where it cannot be
    created (numba then picks its default place)."""
    path = cache_dir(package_dir)
    with _LOCK:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            yield None
            return
        previous = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = str(path)
        try:
            yield path
        finally:
            numba.config.CACHE_DIR = previous
