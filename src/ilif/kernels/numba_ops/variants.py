"""Compiling one variant of the fused CPU kernels (a kernel family and a float dtype) on its first
use, with a one-line note while it compiles.

A variant is compiled once per machine and source version and then loaded from the cache
(:mod:`.cache`); a marker file beside the cached code records that it is there. Only the variants
a program runs are compiled.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

# A cold compile of one variant on two cores, in seconds (docs/performance.md)
COMPILE_ESTIMATE_S = {"ilif": 60, "clif": 30}

_READY: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


def ensure_variant(
    key: str,
    label: str,
    estimate_s: float,
    compile_fn: Callable[[], object],
    cache: Path | None,
    stream: TextIO | None = None,
) -> bool:
    """Run ``compile_fn`` (which compiles the variant ``key`` or loads it from ``cache``); when
    ``cache`` holds no marker of ``key`` yet, first print one line saying what compiles, and
    write the marker after. Returns whether the line was printed."""
    marker = None if cache is None else cache / f"{key}.compiled"
    cold = marker is None or not marker.exists()
    if cold:
        where = f"; cached in {cache}" if cache is not None else ""
        print(f"ilif: compiling the fused CPU kernel for {label}, once, about {estimate_s:.0f} s"
              f"{where}", file=stream or sys.stderr, flush=True)
    start = time.perf_counter()
    compile_fn()
    if cold and marker is not None:
        try:
            marker.write_text(f"{time.perf_counter() - start:.1f} s\n")
        except OSError:
            pass
    return cold


def compile_variant(family: str, dtype: np.dtype | type) -> None:
    """Compile (or load) the kernels of ``family`` (``"ilif"``, ``"clif"``) for float ``dtype``
    (``uint16``: bfloat16), once per process."""
    name = "bfloat16" if np.dtype(dtype) == np.uint16 else np.dtype(dtype).name
    if (family, name) in _READY:
        return
    from ilif.kernels.numba_ops.cache import numba_cache_dir
    from ilif.kernels.numba_ops.omp import omp_bodies

    with _LOCK:
        if (family, name) in _READY:
            return
        with numba_cache_dir() as cache:
            ensure_variant(f"{family}-{name}", f"{family.upper()} {name}",
                           COMPILE_ESTIMATE_S[family], lambda: omp_bodies(family, np.dtype(dtype)),
                           cache)
        _READY.add((family, name))
