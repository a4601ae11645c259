"""Where the fused CPU kernels spend their time: the measurements behind docs/performance.md.

    python benchmarks/kernel_profile.py                  # every section
    python benchmarks/kernel_profile.py --only rows      # one section (repeatable)

Sections (each interleaves the variants it compares, so that a load change on a shared machine
hits all of them alike, and reports medians):

- ``threads``: does a second thread add vector throughput? A vectorised multiply-add loop and a
  scalar latency-bound loop, once on one thread, then twice the work on two threads.
- ``rows``: nanoseconds per neuron for one step over 1024 L1-resident neurons: the ILIF forward
  step per flag set (CIU, MPIU), the surrogate g(h) per shape, the ILIF adjoint step (with the
  rectangle's g(h), as the backward runs it).
- ``row_cost``: what a driver spends per row it cuts (per chunk and step), beside the work on
  the row's neurons: the forward and backward kernels on an L2-resident input [6, 32768], 1
  thread, with chunks of 64 and of 512 neurons; (time difference) / (row-count difference).
- ``final_state``: writing the final state as the forward does, chunk by chunk from 4 L1 rows
  into ``[4, 32·64·16·16]``, with streaming stores (the kernels' ``stream_row``) and with plain
  stores, 1 thread.
- ``chunks``: the forward and backward kernels on the main size [6, 32·64·16·16], 2 threads,
  wall clock, per chunk length.
- ``prefetch``: the ILIF, LIF and CLIF backward kernels on the main size, 2 threads, wall
  clock, with and without their software prefetches (``cfg[PREFETCH]``).
- ``backward``: the ILIF and LIF forward and backward kernels on the main size, 1 thread, CPU
  time.
- ``sizes``: the ILIF forward and backward kernels (1 thread, wall clock) in ns per
  neuron-step on [6, n] for n from 8192 to 2097152 (the main size is 524288), beside the MiB a
  forward + backward pair touches (x, spikes, σ, dL/dS, dL/dx) and the last-level cache.
- ``dispatch``: the fixed cost of a call: a fused ILIF forward and backward on [6, 16] (1
  thread), through the eager path (``cpu._EagerFused``) and through the ``torch.library``
  operators.
- ``order``: the fused ILIF forward+backward (2 threads, wall clock) right after another fused
  run and right after a SpikingJelly LIFNode run, with the minor page faults per call of both.
- ``compile``: a cold compile of the kernels (ILIF and CLIF, float32 and float64) with an empty
  numba cache, in a fresh process.
- ``torch_compile``: for comparison, what ``torch.compile`` of the eager ILIF loop (as in
  benchmarks/neurons.py) costs on its first call, on a new γ and on a new batch size (2 threads,
  input [6, 8, 64, 16, 16]): each is a new graph.

Results are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from numba import njit

from ilif.files import write_json
from ilif.kernels import cpu
from ilif.kernels import numba_ops as ops
from ilif.kernels.numba_ops.ilif_rows import ilif_adjoint_chunk, ilif_forward_row
from ilif.kernels.numba_ops.llvm import _store_fence, wide_vectors
from ilif.kernels.numba_ops.rows import copy_row, row, stream_row
from ilif.kernels.numba_ops.surrogates import surrogate_row
from ilif.neurons import CLIF, ILIF, LIF

SECTIONS = ("threads", "rows", "row_cost", "final_state", "chunks", "prefetch", "backward", "sizes",
            "dispatch", "order", "compile", "torch_compile")
MAIN = (6, 32 * 64 * 16 * 16)
ROW = 1024


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def _interleaved(variants: dict[str, Callable[[], Any]], rounds: int,
                 clock: Callable[[], float] = time.process_time) -> dict[str, float]:
    """Median time (ms) of each variant, run in turn ``rounds`` times after one warm-up each."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, fn in variants.items():
            t0 = clock()
            fn()
            times[key].append(clock() - t0)
    return {k: _median_ms(v) for k, v in times.items()}


def _main_input(steps: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn((steps, n), generator=gen) * 1.5 + 0.3  # as benchmarks/neurons.py


# ------------------------------------------------------------------------------------- threads
@njit(nogil=True, fastmath=True)
def _vector_work(a, passes):
    for _ in range(passes):
        for j in range(a.shape[0]):
            a[j] = a[j] * np.float32(0.999) + np.float32(0.001)


@njit(nogil=True)
def _scalar_work(n):
    s = 0.0
    for _ in range(n):
        s = s * 0.9999 + 1.0
    return s


def section_threads(args: argparse.Namespace) -> dict[str, Any]:
    bufs = np.ones(ROW, np.float32), np.ones(ROW, np.float32)
    cases = {"vector": lambda buf: _vector_work(buf, 2_000_000),
             "scalar": lambda buf: _scalar_work(10**8)}
    out = {}
    for name, work in cases.items():
        def two(work=work) -> None:
            other = threading.Thread(target=work, args=(bufs[1],))
            other.start()
            work(bufs[0])
            other.join()

        res = _interleaved({"1 thread": lambda work=work: work(bufs[0]),
                            "2 threads, twice the work": two}, 3, time.perf_counter)
        out[name] = {**res, "ratio": res["2 threads, twice the work"] / res["1 thread"]}
        print(f"{name} loop: 1 thread {res['1 thread']:.0f} ms, twice the work on 2 threads "
              f"{res['2 threads, twice the work']:.0f} ms (ratio {out[name]['ratio']:.2f}; "
              "1.0 = the second thread doubles the throughput)")
    return out


# ---------------------------------------------------------------------------------------- rows
# The rows are cut once, outside the timed repetitions: a numba slice costs as much as a step
# over a few hundred neurons (section ``row_cost``).
@njit(error_model="numpy")  # as the drivers: no zero-division checks in the loops
def _repeat_forward_row(k, r, bits, par, ciu, mpiu):
    x, v, trace, memory, drive, spk, h, sgm = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    for _ in range(k):
        ilif_forward_row(x, v, trace, memory, drive, bits, spk, h, sgm, par, ciu, mpiu,
                             ops.STATS_NONE)


@njit(error_model="numpy")  # as the drivers: no zero-division checks in the loops
def _repeat_surrogate(k, r, par, code):
    g, h = r[8], r[6]
    for _ in range(k):
        surrogate_row(g, h, code, par)


@njit(error_model="numpy")  # as the drivers: no zero-division checks in the loops
def _repeat_adjoint(k, r, bits, par, ciu, mpiu):
    one = par[ops.ONE]
    n = r.shape[1]
    # one step of ilif_adjoint_chunk: x r[0], σ(M) with the spikes packed in r[7], dL/dS r[9],
    # dL/dx r[10], the four adjoint rows r[11:15], h r[6] (as rec[0, 0]), g(h) into r[8]
    x, bits2, sgm, gout, gx, ga = r[0:1], bits.reshape(1, n), r[7:8], r[9:10], r[10:11], r[11:15]
    rec, no_bits = r[6:7].reshape(1, 1, n), np.zeros(n, np.uint8)
    g = r[8:9]
    for _ in range(k):
        ilif_adjoint_chunk(x, bits2, sgm, gout, gx, ga, rec, g, no_bits, 0, n, par,
                           ops.RECTANGLE, one, one, ciu, mpiu)


def section_rows(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    par = cpu.form_config(ILIF().fused_form(), torch.float32)[1]
    rng = np.random.default_rng(0)
    rows = (rng.standard_normal((15, ROW)) * 1.5 + 0.3).astype(np.float32)
    # the σ(M) row: values of σ, which the forward steps overwrite with σ(M) and the spikes
    # packed in; the adjoint reads it
    rows[7] = rng.random(ROW).astype(np.float32) * 0.98 + 0.01
    bits = (rng.random(ROW) < 0.3).astype(np.uint8)
    k = 4000
    variants: dict[str, Callable[[], Any]] = {}
    for ciu in (False, True):
        for mpiu in (False, True):
            name = f"forward step, CIU {'on' if ciu else 'off'}, MPIU {'on' if mpiu else 'off'}"
            variants[name] = lambda c=ciu, m=mpiu: _repeat_forward_row(k, rows, bits, par, c, m)
    for code, shape in enumerate(("rectangle", "triangle", "sigmoid", "atan")):
        variants[f"surrogate g(h), {shape}"] = lambda c=code: _repeat_surrogate(k, rows, par, c)
    for ciu, mpiu in ((False, False), (True, True)):
        name = f"adjoint step, CIU {'on' if ciu else 'off'}, MPIU {'on' if mpiu else 'off'}"
        variants[name] = lambda c=ciu, m=mpiu: _repeat_adjoint(k, rows, bits, par, c, m)
    res = _interleaved(variants, args.rounds)
    out = {name: ms * 1e6 / (k * ROW) for name, ms in res.items()}  # ns per neuron
    for name, ns in out.items():
        print(f"{name}: {ns:.3f} ns per neuron")
    return {"ns_per_neuron": out}


# ---------------------------------------------------------------------------- full-size kernels
class _Kernels:
    """The forward and backward kernels on prepared arrays of the main size (no allocation).

    As in a real call, the forward writes what the backward reads (ILIF with the MPIU and CLIF:
    σ with the spikes packed in; else the uint8 spikes) and the backward writes dL/dx into a
    buffer of its own: a backward must follow a forward."""

    def __init__(self, neuron, shape: tuple[int, int] = MAIN) -> None:
        steps, n = shape
        self.shape = shape
        self.x = _main_input(steps, n).numpy()
        self.gout = _main_input(steps, n).numpy()[::-1].copy()
        form = neuron.fused_form()
        self.family = form.family
        self.cfg, self.par = cpu.form_config(form, torch.float32)
        packed = cpu._packed(form.family, form.flags)
        n_state = form.state_size
        self.state0 = np.zeros((n_state, 0), np.float32)
        self.adj = np.zeros((n_state, 0), np.float32)
        self.spikes = np.empty((steps, n), np.float32)
        self.bits = np.empty((0 if packed else steps, n), np.uint8)
        self.sgm = np.zeros((steps if packed else 0, n), np.float32)
        self.final = np.empty((n_state, n), np.float32)
        self.gx = np.zeros((steps, n), np.float32)
        self.stats = np.zeros((0, 3, steps))

    def forward(self, chunk: int) -> None:
        cfg = self.cfg.copy()
        cfg[ops.CHUNK_LEN] = chunk
        cpu._launch(self.family, "forward", -(-self.shape[1] // chunk), self.x, self.state0,
                    self.spikes, self.bits, self.sgm, self.final, self.par, cfg, self.stats)

    def backward(self, chunk: int, prefetch: bool = True) -> None:
        cfg = self.cfg.copy()
        cfg[ops.CHUNK_LEN], cfg[ops.PREFETCH] = chunk, int(prefetch)
        cpu._launch(self.family, "backward", -(-self.shape[1] // chunk), self.x, self.bits,
                    self.sgm, self.gout, self.state0, self.adj, self.gx, self.par, cfg)


def section_row_cost(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    kern = _Kernels(ILIF(), (MAIN[0], 32768))
    kern.forward(ops.chunk_len(MAIN[0], backward=False))
    variants: dict[str, Callable[[], Any]] = {}
    for chunk in (64, 512):  # each backward reads what the forward before it kept
        variants[f"forward, chunk {chunk}"] = lambda c=chunk: kern.forward(c)
        variants[f"backward, chunk {chunk}"] = lambda c=chunk: kern.backward(c)
    res = _interleaved(variants, 10 * args.rounds)
    rows = {c: MAIN[0] * 32768 // c for c in (64, 512)}
    out: dict[str, Any] = {"ms": res}
    for kind in ("forward", "backward"):
        ns = (res[f"{kind}, chunk 64"] - res[f"{kind}, chunk 512"]) * 1e6 / (rows[64] - rows[512])
        out[f"{kind}_ns_per_row"] = ns
        print(f"{kind}: {ns:.0f} ns per row ({res[f'{kind}, chunk 64']:.3f} ms with chunks of 64, "
              f"{res[f'{kind}, chunk 512']:.3f} ms with chunks of 512)")
    return out


@njit(error_model="numpy")
def _write_final_state(dst, ws, stream):
    wide_vectors()
    n = dst.shape[1]
    ch = ws.shape[1]
    for lo in range(0, n, ch):
        m = min(ch, n - lo)
        for k in range(dst.shape[0]):
            if stream:
                stream_row(row(dst, k, lo, m), row(ws, k, 0, m))
            else:
                copy_row(row(dst, k, lo, m), row(ws, k, 0, m))
    if stream:
        _store_fence()


def section_final_state(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    dst = np.empty((4, MAIN[1]), np.float32)
    ws = np.ones((4, ops.chunk_len(MAIN[0], backward=False)), np.float32)
    res = _interleaved({"streaming stores": lambda: _write_final_state(dst, ws, True),
                        "plain stores": lambda: _write_final_state(dst, ws, False)}, args.rounds)
    for name, ms in res.items():
        print(f"final state [4, {MAIN[1]}], {name}: {ms:.3f} ms")
    return {"ms": res}


def section_chunks(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)
    kern = _Kernels(ILIF())
    kern.forward(ops.chunk_len(MAIN[0], backward=False))
    variants: dict[str, Callable[[], Any]] = {}
    for chunk in (128, 256, 512, 1024, 2048, 4096):
        variants[f"forward, chunk {chunk}"] = lambda c=chunk: kern.forward(c)
        variants[f"backward, chunk {chunk}"] = lambda c=chunk: kern.backward(c)
    res = _interleaved(variants, args.rounds, time.perf_counter)
    for name, ms in res.items():
        print(f"ILIF {name}: {ms:.2f} ms")
    return {"ms": res}


def section_prefetch(args: argparse.Namespace) -> dict[str, Any]:
    """The backward kernels with and without their software prefetches (``cfg[PREFETCH]``) on
    the main size, 2 threads, wall clock: ILIF, LIF and CLIF, float32, after one forward."""
    torch.set_num_threads(2)
    out = {}
    bwd_chunk = ops.chunk_len(MAIN[0], backward=True)
    for name, neuron in (("ilif", ILIF()), ("lif", LIF()), ("clif", CLIF())):
        kern = _Kernels(neuron)
        kern.forward(ops.chunk_len(MAIN[0], backward=False))  # what the backwards read
        res = _interleaved({
            "backward, with prefetch": lambda k=kern: k.backward(bwd_chunk, True),
            "backward, without": lambda k=kern: k.backward(bwd_chunk, False),
        }, args.rounds, time.perf_counter)
        res["ratio"] = res["backward, without"] / res["backward, with prefetch"]
        out[name] = res
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
    return {"ms": out, "ratio": "time without / time with prefetch"}


def section_backward(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    out = {}
    chunk = ops.chunk_len(MAIN[0], backward=True)
    for name, neuron in (("ilif", ILIF()), ("lif", LIF())):
        kern = _Kernels(neuron)
        kern.forward(ops.chunk_len(MAIN[0], backward=False))
        res = _interleaved({  # in this order: each backward reads what the forward kept
            "forward": lambda k=kern: k.forward(ops.chunk_len(MAIN[0], backward=False)),
            "backward": lambda k=kern: k.backward(chunk),
        }, args.rounds)
        out[name] = res
        print(f"{name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in res.items()))
    return {"ms": out}


# --------------------------------------------------------------------------------------- sizes
SIZES = (8192, 32768, 131072, 524288, 2097152)  # neurons per step (T = 6); the main size is 524288


def section_sizes(args: argparse.Namespace) -> dict[str, Any]:
    """ns per neuron-step of the ILIF forward and backward kernels (1 thread, prepared arrays)
    as the layer grows past the caches: the arrays a pair of calls touches (x, the spikes, σ,
    dL/dS, dL/dx) against the last-level cache."""
    torch.set_num_threads(1)
    steps = MAIN[0]
    out = {}
    for n in SIZES:
        kern = _Kernels(ILIF(), (steps, n))
        rounds = max(args.rounds, int(3e7 // (steps * n)))
        res = _interleaved({  # in this order: each backward reads what the forward kept
            "forward": lambda k=kern: k.forward(ops.chunk_len(steps, backward=False)),
            "backward": lambda k=kern: k.backward(ops.chunk_len(steps, backward=True)),
        }, rounds, clock=time.perf_counter)
        touched = 5 * steps * n * 4
        out[str(n)] = {"MiB touched": touched / 2**20,
                       **{f"{k} ns per neuron-step": v * 1e6 / (steps * n) for k, v in res.items()}}
        print(f"{n} neurons × {steps} steps ({touched / 2**20:.0f} MiB): "
              + ", ".join(f"{k} {v * 1e6 / (steps * n):.3f} ns" for k, v in res.items()))
    return {"neurons_per_step": out, "last_level_cache_MiB": _llc_mib()}


def section_dispatch(args: argparse.Namespace) -> dict[str, Any]:
    """The fixed cost of a call: a fused ILIF forward and backward on a tiny input [6, 16] (1
    thread), as an eager call runs it (the operators' implementations through
    ``cpu._EagerFused``) and through the ``torch.library`` operators (what traced calls run)."""
    torch.set_num_threads(1)
    layer = ILIF(backend="cpu")
    x = _main_input(6, 16).requires_grad_()
    grad = torch.ones_like(x)
    traced = cpu._traced
    ways = {"eager path": traced, "operators": lambda *tensors: True}
    times = {way: {"forward": [], "backward": []} for way in ways}

    def calls(count: int, record: dict[str, list[float]] | None) -> None:
        for _ in range(count):
            layer.reset()
            t0 = time.perf_counter()
            spikes = layer(x)
            t1 = time.perf_counter()
            torch.autograd.grad(spikes, x, grad)
            t2 = time.perf_counter()
            if record is not None:
                record["forward"].append(t1 - t0)
                record["backward"].append(t2 - t1)

    try:
        for rnd in range(args.rounds + 1):  # round 0 warms both ways up
            for way, is_traced in ways.items():
                cpu._traced = is_traced
                calls(50, times[way] if rnd else None)
    finally:
        cpu._traced = traced
    out = {way: {key: _median_ms(v) for key, v in t.items()} for way, t in times.items()}
    for way, res in out.items():
        print(f"{way}: forward {res['forward']:.3f} ms, backward {res['backward']:.3f} ms")
    return {"ms": out}


def _llc_mib() -> float | None:
    """The last-level cache as Linux lists it (the highest level under sysfs), MiB."""
    sizes = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
            sizes[level] = int(size.rstrip("KMG")) * {"K": 1 / 1024, "M": 1.0}.get(size[-1:], 1)
        except (OSError, ValueError):
            continue
    return sizes[max(sizes)] if sizes else None


# --------------------------------------------------------------------------------------- order
def section_order(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from spikingjelly.activation_based import neuron as sj_neuron
    except Exception as exc:  # a peer that does not import is reported, not fatal
        print(f"order: skipped, spikingjelly does not import: {exc}")
        return {"skipped": str(exc)}
    torch.set_num_threads(2)
    steps, n = MAIN
    x = _main_input(steps, n).view(steps, 32, 64, 16, 16).requires_grad_()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ours, other = ILIF(), ILIF()
    sj = sj_neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None, step_mode="m")

    def run(layer) -> None:
        layer.reset()
        torch.autograd.grad(layer(x), x, grad)

    times: dict[str, list[float]] = {"fused after fused": [], "fused after LIFNode": [],
                                     "LIFNode": []}
    faults = {"fused": 0, "LIFNode": 0}

    def timed(key: str, layer, fault_key: str) -> None:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        run(layer)
        times[key].append(time.perf_counter() - t0)
        faults[fault_key] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    for layer in (ours, other, sj):
        run(layer)
    for _ in range(args.rounds):
        run(other)
        timed("fused after fused", ours, "fused")
        timed("LIFNode", sj, "LIFNode")
        timed("fused after LIFNode", ours, "fused")
    res = {k: _median_ms(v) for k, v in times.items()}
    per_call = {"fused": faults["fused"] / (2 * args.rounds),
                "LIFNode": faults["LIFNode"] / args.rounds}
    print("order (2 threads, wall): " + ", ".join(f"{k} {v:.2f} ms" for k, v in res.items())
          + f"; minor page faults per call: fused {per_call['fused']:.0f}, "
          f"LIFNode {per_call['LIFNode']:.0f}")
    return {"ms": res, "minor_faults_per_call": per_call}


# ------------------------------------------------------------------------------------- compile
_COMPILE_SNIPPET = """
import torch
from ilif.neurons import CLIF, ILIF
for dtype in (torch.float32, torch.float64):
    for cls in (ILIF, CLIF):
        x = torch.randn(3, 50, dtype=dtype, requires_grad=True)
        torch.autograd.grad(cls(backend="cpu")(x).sum(), x)
"""


def section_compile(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ILIF_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                              os.environ.get("PYTHONPATH", "")])}
        walls = []
        for _ in range(2):  # cold (empty cache), then warm
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, check=True)
            walls.append(time.perf_counter() - t0)
    print(f"compile: cold process {walls[0]:.1f} s, the next one (cache warm) {walls[1]:.1f} s "
          "(wall, including the imports)")
    return {"cold_s": walls[0], "warm_s": walls[1]}


def section_torch_compile(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)
    torch._dynamo.reset()
    # an empty inductor cache: the first call of a fresh machine (a warm on-disk cache from an
    # earlier process would hide most of the compilation)
    cache = tempfile.mkdtemp(prefix="inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    layer = ILIF(backend="torch")
    loop = torch.compile(layer.multi_step_torch, dynamic=False)

    def call(batch: int) -> float:
        x = torch.randn(6, batch, 64, 16, 16, requires_grad=True)
        t0 = time.perf_counter()
        spikes = loop(x, layer.initial_state(x[0]))[0]
        torch.autograd.grad(spikes.sum(), x)
        return time.perf_counter() - t0

    out = {"first call": call(8), "same call again": call(8)}
    layer.surrogate.width = 0.5  # a γ sweep's next value
    out["new width"] = call(8)
    out["new batch size"] = call(4)
    shutil.rmtree(cache, ignore_errors=True)
    print("torch.compile of the eager ILIF (s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return {"s": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=SECTIONS,
                   help="run only this section (repeatable); default: all")
    p.add_argument("--rounds", type=int, default=11, help="interleaved rounds per section")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent / "results" / "kernel-profile-cpu.json")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    report: dict[str, Any] = {
        "command": " ".join(["kernel_profile.py", *(argv if argv is not None else sys.argv[1:])]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
    }
    for name in args.only or SECTIONS:
        print(f"[{name}]", file=sys.stderr, flush=True)
        report[name] = globals()[f"section_{name}"](args)
    write_json(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
