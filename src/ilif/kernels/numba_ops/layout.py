"""The fused CPU kernels' array layout and constants (plain Python, no numba).

Inputs are ``x[T, N]`` (time first, neurons flattened), states ``state[S, N]`` (one row per state
variable). The neurons are cut into chunks of ``cfg[CHUNK_LEN]`` neurons (at most :data:`CHUNK`).
Numba specialises on the dtypes and the kernel family only: the flags, the surrogate code and γ
are runtime arguments (the ``cfg`` integer array, the ``par`` float array), so a γ sweep never
recompiles.
"""

from __future__ import annotations

CHUNK = 512  # neurons per chunk (the backward's shrinks for very long T: chunk_len)

# cfg: integer configuration of one call
(KIND, CIU, MPIU, DETACH_RESET, DETACH_INHIBITION, SURROGATE, WANT_STATS, CHUNK_LEN,
 PREFETCH) = range(9)
CFG_SIZE = 9
KIND_ILIF, KIND_CLIF = 0, 1  # LIF is ILIF with both units off (SPEC §2)
RECTANGLE, TRIANGLE, SIGMOID, ATAN = range(4)  # surrogate codes (ilif.surrogate)

# par: float parameters, in the input dtype (so that arithmetic mirrors the eager float32 ops).
# ZERO and ONE are 0 and 1 in that dtype: numba types ``x + 1`` of a float32 x as float64, which
# would turn every loop that uses such a constant into (slower) float64 arithmetic.
LAMBDA, THRESHOLD, CIU_GAIN, MPIU_GAIN, TAU, WIDTH, HALF_WIDTH, PI_OVER_WIDTH, ZERO, ONE = range(10)
PAR_SIZE = 10

# stats[chunk, quantity, t] with the quantities below
STAT_SPIKES, STAT_OPEN, STAT_SURROGATE = range(3)
# what the ILIF forward step adds for the statistics: nothing, the counts, the counts and h
STATS_NONE, STATS_COUNT, STATS_H = range(3)

FAMILIES = {"ilif": KIND_ILIF, "clif": KIND_CLIF}  # the kernel families

# the OpenMP launch's meta array: meta[0] the next chunk (a shared counter), meta[1] the chunks,
# meta[2] the threads; then per array its address and (up to 3) dimensions
COUNTER, N_CHUNKS, N_THREADS, HEADER = 0, 1, 2, 3
PER_ARRAY = 4


def chunk_len(n_steps: int, backward: bool) -> int:
    """Neurons per chunk (``benchmarks/kernel_profile.py --only chunks``): a chunk's state rows
    and scratch stay in L1 across its time loop. The backward also keeps up to 3 recomputed rows
    per step, so its chunk shrinks for T > 128 to keep those within about 1 MiB (L2)."""
    if not backward:
        return CHUNK
    return max(256, min(CHUNK, (1 << 20) // (16 * max(1, n_steps)) // 64 * 64))

