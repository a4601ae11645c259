"""Numba kernels of the fused CPU path, by concern (docs/performance.md):

- :mod:`.layout`: array layout, configuration indices, chunk sizes (plain Python);
- :mod:`.llvm`: LLVM intrinsics (bit casts, vector width, pointers, streaming stores, CAS);
- :mod:`.fastmath`: e^{−z}, σ and the packing of σ with the spike;
- :mod:`.rows`: row views, copies and streaming stores;
- :mod:`.surrogates`: g(h) and the per-step statistics;
- :mod:`.ilif_rows`, :mod:`.clif_rows`: the neuron steps, rebuilds and adjoints;
- :mod:`.drivers`: the forward and backward drivers, one pair per kernel family;
- :mod:`.bf16`, :mod:`.bf16_drivers`: bfloat16 ⇄ float32 on the bits, and the drivers for
  bfloat16 input (float32 inside);
- :mod:`.omp`: the bodies launched on torch's OpenMP threads;
- :mod:`.cache`: the cache directory keyed by a hash of this package's sources;
- :mod:`.variants`: compiling one (family, dtype) variant on first use, with a note.

Importing the package defines the kernels; each variant compiles (or loads from the cache) on
its first use.
"""

from ilif.kernels.numba_ops.cache import numba_cache_dir

with numba_cache_dir():  # the kernels below cache in the guarded directory
    from ilif.kernels.numba_ops import (  # noqa: F401
        bf16,
        bf16_drivers,
        clif_rows,
        drivers,
        fastmath,
        ilif_rows,
        llvm,
        omp,
        rows,
        surrogates,
    )
    from ilif.kernels.numba_ops.layout import *  # noqa: F403
    from ilif.kernels.numba_ops.variants import compile_variant  # noqa: F401
