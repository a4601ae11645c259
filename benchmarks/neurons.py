"""Side-by-side speed of multi-step spiking neurons: ours (per backend) and the peers.

    python benchmarks/neurons.py                       # CPU, 2 threads, full sizes
    python benchmarks/neurons.py --quick --out /tmp/neurons.json
    python benchmarks/neurons.py --device cuda         # on a GPU (Triton backend, peers' GPU paths)

One process; for every input size and every candidate: ``--warmup`` runs, then ``--repeats``
timed runs, interleaved across candidates (so that a load change on a shared machine hits all of
them alike), reported as medians. Each timed run follows ``--settle`` untimed runs of the same
candidate, so that it measures the candidate in its steady state rather than the side effects of
the candidate before it: glibc handing that one's freed memory back to the OS (the next
allocations page-fault), its caches, and torch's OpenMP threads that keep spinning for a while
after its parallel ops (about a millisecond to ten; they take cores from a kernel that runs its
own threads; ``benchmarks/kernel_profile.py --only order`` measures that case). Two timings per
candidate:

- ``fwd``: the forward of the layer on ``x`` that requires grad (the training forward);
- ``fwd_bwd``: the forward plus ``torch.autograd.grad(spikes, x, grad_output)`` with a prepared
  ``grad_output`` (no clone, no loss in the timed region): the neuron alone.

Candidates: our ILIF, LIF and CLIF with ``backend="torch"`` (the eager loop) and the fused
backend of the device (``"cpu"``; ``"triton"`` on CUDA); SpikingJelly's multi-step ``LIFNode``
(soft reset, ``decay_input=False``: the same equations as our LIF; its fastest path for the
device is chosen by SpikingJelly itself); snnTorch's ``Leaky`` (subtract reset) in a Python loop;
and, for the record of the design choice, ``torch.compile`` of our eager ILIF loop (``--compile``).
Peers that do not import are skipped with the reason.

Also measured in the same process:

- the memory floor: the bytes that must move (float32: forward reads x and writes S, 8 B per
  neuron-step; forward+backward also reads dL/dS and x and writes dL/dx, 20 B) over the copy
  bandwidth (``dst.copy_(src)`` on a tensor of the input's size, bytes read + written / time);
- the memory that the saved state for backward costs, per neuron per step: every tensor that
  autograd saves during the forward (``torch.autograd.graph.saved_tensors_hooks``), counted once
  per storage, without the input ``x`` itself (which the caller holds anyway);
- the overhead of the statistics (``stats_callback``) on the fused ILIF.

The table is printed and written as JSON (``--out``) and, with ``--markdown``, as Markdown.
Ratios: ``vs SJ`` = SpikingJelly LIFNode time / candidate time (> 1: faster than LIFNode);
``x floor`` = candidate time / memory floor. Beside the medians, the fastest of the timed runs
(and the ratios between fastest runs) are reported: on a shared machine they are the runs least
disturbed by other load. The copy bandwidth is the fastest of its runs for the same reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ilif.files import write_text
from ilif.neurons import CLIF, ILIF, LIF

FULL_SIZES = [
    (4, (32, 64, 16, 16)),
    (6, (32, 64, 16, 16)),
    (16, (16, 64, 16, 16)),
    (6, (64, 128, 8, 8)),
]
QUICK_SIZES = [(4, (2, 8, 8, 8)), (6, (2, 4, 8, 8))]
MAIN_SIZE = (6, (32, 64, 16, 16))
FWD_BYTES, FWD_BWD_BYTES = 8, 20  # per neuron-step in float32 (see the module docstring)
BASELINE = "spikingjelly LIFNode"
PEER_TAU = 2.0  # every layer timed at the peers' usual τ = 2 (λ = β = 0.5), ours included


@dataclass
class Candidate:
    """One layer to time: ``make()`` builds it, ``run(layer, x)`` returns the spikes."""

    name: str
    backend: str
    make: Callable[[], Any]
    run: Callable[[Any, torch.Tensor], torch.Tensor]
    layer: Any = None
    skipped: str | None = None
    fwd: list[float] = field(default_factory=list)
    fwd_bwd: list[float] = field(default_factory=list)


def _ours(cls, backend: str, **kw: Any) -> Candidate:
    kw = {"tau": PEER_TAU, **kw}

    def make():
        return cls(backend=backend, **kw)

    def run(layer, x):
        layer.reset()
        return layer(x)

    return Candidate(f"ilif {cls.__name__}", backend, make, run)


def _compiled_ilif() -> Candidate:
    def make():
        layer = ILIF(tau=PEER_TAU, backend="torch")
        loop = torch.compile(layer.multi_step_torch, dynamic=False)
        return layer, loop

    def run(pair, x):
        layer, loop = pair
        state = layer.initial_state(x[0])
        return loop(x, state)[0]

    return Candidate("ilif ILIF", "torch.compile", make, run)


def _spikingjelly(device: str) -> Candidate:
    try:
        from spikingjelly.activation_based import neuron as sj_neuron
    except Exception as exc:  # any import failure: skip cleanly
        return _skipped(BASELINE, "auto", f"spikingjelly does not import: {exc}")

    def make():
        return sj_neuron.LIFNode(
            tau=PEER_TAU, decay_input=False, v_reset=None, v_threshold=1.0, step_mode="m"
        )

    def run(layer, x):
        layer.reset()
        return layer(x)

    return Candidate(BASELINE, "auto (its fastest for the device)", make, run)


def _snntorch() -> Candidate:
    try:
        import snntorch
    except Exception as exc:
        return _skipped("snntorch Leaky", "python loop", f"snntorch does not import: {exc}")

    def make():
        return snntorch.Leaky(beta=1.0 - 1.0 / PEER_TAU, threshold=1.0, reset_mechanism="subtract")

    def run(layer, x):
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x.unbind(0):
            spk, mem = layer(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Candidate("snntorch Leaky", "python loop", make, run)


def _skipped(name: str, backend: str, reason: str) -> Candidate:
    return Candidate(name, backend, lambda: None, lambda layer, x: x, skipped=reason)


def candidates(device: str, with_compile: bool) -> list[Candidate]:
    fused = "triton" if device == "cuda" else "cpu"
    out = []
    for cls in (ILIF, LIF, CLIF):
        out.append(_ours(cls, "torch"))
        out.append(_ours(cls, fused))
    if with_compile:
        out.append(_compiled_ilif())
    out.append(_spikingjelly(device))
    out.append(_snntorch())
    return out


# ------------------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


_CLOCK = time.perf_counter


def _timed(fn: Callable[[], Any], device: str) -> float:
    _sync(device)
    t0 = _CLOCK()
    fn()
    _sync(device)
    return (_CLOCK() - t0) * 1e3


def copy_bandwidth(numel: int, device: str, repeats: int) -> float:
    """Bytes read + written per second by ``dst.copy_(src)`` on ``numel`` float32 elements."""
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = [_timed(lambda: dst.copy_(src), device) for _ in range(max(repeats, 5))]
    # the fastest copy: the bandwidth the machine offers when nothing else interferes
    return 2 * numel * 4 / (min(times) / 1e3)


def saved_bytes_per_neuron_step(cand: Candidate, x: torch.Tensor) -> float:
    """Bytes of the tensors autograd saves during the forward (one count per storage), without
    the storage of ``x``, per element of ``x``."""
    seen: dict[int, int] = {}
    x_ptr = x.untyped_storage().data_ptr()

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr != x_ptr:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = cand.run(cand.layer, x)
    del y
    return sum(seen.values()) / x.numel()


def bench_size(
    steps: int, shape: tuple[int, ...], cands: list[Candidate], args: argparse.Namespace
) -> dict[str, Any]:
    device = args.device
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.randn((steps, *shape), generator=gen) * 1.5 + 0.3).to(device).requires_grad_()
    grad_out = torch.randn(x.shape, generator=gen).to(device)
    active = []
    for cand in cands:
        cand.fwd, cand.fwd_bwd = [], []
        if cand.skipped:
            continue
        try:
            cand.layer = cand.make()
            for _ in range(args.warmup):
                y = cand.run(cand.layer, x)
                torch.autograd.grad(y, x, grad_out)
            active.append(cand)
        except Exception as exc:  # a candidate that cannot run here is reported, not fatal
            cand.skipped = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    for _ in range(args.repeats):
        for cand in active:
            def fwd(c=cand):
                return c.run(c.layer, x)

            def fwd_bwd(c=cand):
                return torch.autograd.grad(c.run(c.layer, x), x, grad_out)

            for timings, fn in ((cand.fwd, fwd), (cand.fwd_bwd, fwd_bwd)):
                for _ in range(args.settle):
                    fn()
                timings.append(_timed(fn, device))
    bandwidth = copy_bandwidth(x.numel(), device, args.repeats)
    floor_fwd = FWD_BYTES * x.numel() / bandwidth * 1e3
    floor_fwd_bwd = FWD_BWD_BYTES * x.numel() / bandwidth * 1e3
    base = next((c for c in active if c.name == BASELINE), None)
    base_fwd = statistics.median(base.fwd) if base else None
    base_fwd_bwd = statistics.median(base.fwd_bwd) if base else None
    base_best = min(base.fwd_bwd) if base else None
    rows = []
    for cand in cands:
        row: dict[str, Any] = {"name": cand.name, "backend": cand.backend}
        if cand.skipped or not cand.fwd:
            row["skipped"] = cand.skipped or "did not run"
            rows.append(row)
            continue
        fwd, fwd_bwd = statistics.median(cand.fwd), statistics.median(cand.fwd_bwd)
        best = min(cand.fwd_bwd)
        row.update(
            fwd_ms=fwd,
            fwd_bwd_ms=fwd_bwd,
            fwd_bwd_fastest_ms=best,
            vs_sj_fwd=(base_fwd / fwd) if base_fwd else None,
            vs_sj_fwd_bwd=(base_fwd_bwd / fwd_bwd) if base_fwd_bwd else None,
            vs_sj_fwd_bwd_fastest=(base_best / best) if base_best else None,
            x_floor_fwd=fwd / floor_fwd,
            x_floor_fwd_bwd=fwd_bwd / floor_fwd_bwd,
            x_floor_fwd_bwd_fastest=best / floor_fwd_bwd,
            saved_bytes_per_neuron_step=saved_bytes_per_neuron_step(cand, x),
        )
        rows.append(row)
    result = {
        "steps": steps,
        "shape": [steps, *shape],
        "neurons_per_step": x[0].numel(),
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "floor_fwd_ms": floor_fwd,
        "floor_fwd_bwd_ms": floor_fwd_bwd,
        "results": rows,
    }
    if args.device == "cpu":
        result["stats_overhead"] = stats_overhead(x, grad_out, args)
    return result


def stats_overhead(x: torch.Tensor, grad_out: torch.Tensor, args: argparse.Namespace) -> dict:
    """Fused ILIF with and without a ``stats_callback`` (relative extra time, median of runs)."""
    plain, counted = ILIF(backend="cpu"), ILIF(backend="cpu")
    counted.stats_callback = lambda neuron, stats, spikes: None
    times: dict[str, list[float]] = {"plain": [], "stats": []}
    layers = {"plain": plain, "stats": counted}

    def fwd_bwd(layer):
        layer.reset()
        torch.autograd.grad(layer(x), x, grad_out)

    for _ in range(args.warmup):
        fwd_bwd(plain)
        fwd_bwd(counted)
    for _ in range(max(args.repeats, 11)):
        for key, layer in layers.items():
            times[key].append(_timed(lambda layer=layer: fwd_bwd(layer), args.device))
    plain_ms, stats_ms = statistics.median(times["plain"]), statistics.median(times["stats"])
    return {
        "fwd_bwd_ms": plain_ms,
        "fwd_bwd_with_stats_ms": stats_ms,
        "overhead": stats_ms / plain_ms - 1.0,
        # the fastest runs are the least disturbed by other load on a shared machine
        "overhead_of_fastest": min(times["stats"]) / min(times["plain"]) - 1.0,
    }


# ------------------------------------------------------------------------------------ reports
def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of every size and candidate."""
    lines = [
        "| input [T, ...] | neuron | backend | fwd ms | fwd+bwd ms | vs SJ fwd | vs SJ fwd+bwd "
        "| fastest fwd+bwd ms | vs SJ (fastest) | x floor fwd+bwd (fastest) "
        "| saved B/neuron-step |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        shape = "[" + ", ".join(map(str, res["shape"])) + "]"
        for row in res["results"]:
            if "skipped" in row:
                lines.append(f"| {shape} | {row['name']} | {row['backend']} | skipped: "
                             f"{row['skipped']} | | | | | | | |")
                continue
            lines.append(
                f"| {shape} | {row['name']} | {row['backend']} | {row['fwd_ms']:.2f} "
                f"| {row['fwd_bwd_ms']:.2f} | {_fmt(row['vs_sj_fwd'], '.2f')} "
                f"| {_fmt(row['vs_sj_fwd_bwd'], '.2f')} | {row['fwd_bwd_fastest_ms']:.2f} "
                f"| {_fmt(row['vs_sj_fwd_bwd_fastest'], '.2f')} "
                f"| {row['x_floor_fwd_bwd']:.2f} ({row['x_floor_fwd_bwd_fastest']:.2f}) "
                f"| {row['saved_bytes_per_neuron_step']:.2f} |"
            )
        floor = (
            f"| {shape} | memory floor | {res['copy_bandwidth_GBps']:.1f} GB/s copy "
            f"| {res['floor_fwd_ms']:.2f} | {res['floor_fwd_bwd_ms']:.2f} | | | | | 1.00 | |"
        )
        lines.append(floor)
    overheads = [
        (res["shape"], res["stats_overhead"]) for res in results if "stats_overhead" in res
    ]
    if overheads:
        lines.append("")
        lines.append("| input [T, ...] | fused ILIF fwd+bwd ms | with stats ms | stats overhead "
                     "(medians) | (fastest runs) |")
        lines.append("|---|---:|---:|---:|---:|")
        for shape, o in overheads:
            lines.append(
                f"| [{', '.join(map(str, shape))}] | {o['fwd_bwd_ms']:.2f} "
                f"| {o['fwd_bwd_with_stats_ms']:.2f} | {100 * o['overhead']:+.1f} % "
                f"| {100 * o['overhead_of_fastest']:+.1f} % |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="torch (and kernel) CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    p.add_argument("--size", action="append", default=None, metavar="T,D1,D2,...",
                   help="an input size to run instead of the defaults (repeatable), e.g. "
                        "6,32,64,16,16")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 15, quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="also time torch.compile of the eager ILIF loop (default: on unless "
                        "--quick)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time (default); cpu: CPU time of the process (all its "
                        "threads), which other processes on a shared machine disturb less; use "
                        "it with --threads 1 (idle OpenMP threads spin and would count)")
    p.add_argument("--settle", type=int, default=None,
                   help="untimed runs of the same candidate before each timed run (default 2, "
                        "quick 0): each timing is then of the candidate in its steady state, "
                        "not of the previous candidate's side effects")
    p.add_argument("--no-heap-trim", action="store_true",
                   help="stop glibc from handing freed heap memory back to the OS (mallopt), so "
                        "that no candidate's time depends on page-faulting its buffers in again "
                        "after another candidate's frees (glibc only)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default benchmarks/results/neurons-<device>.json)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the Markdown table")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.clock == "cpu" and args.device == "cuda":
        p.error("--clock cpu measures CPU work; use the wall clock with --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    args.repeats = args.repeats or (3 if args.quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.settle = args.settle if args.settle is not None else (0 if args.quick else 2)
    if args.settle < 0:
        p.error(f"--settle must be >= 0, got {args.settle}")
    if args.compile is None:
        args.compile = not args.quick
    if args.size:
        try:
            parsed = [tuple(int(v) for v in spec.split(",")) for spec in args.size]
        except ValueError:
            p.error(f"--size takes comma-separated integers, got {args.size}")
        if any(len(s) < 2 or min(s) < 1 for s in parsed):
            p.error(f"--size needs T and at least one dimension, all >= 1, got {args.size}")
        args.sizes = [(s[0], s[1:]) for s in parsed]
    else:
        args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "results" / f"neurons-{args.device}.json"
    return args


def keep_freed_heap_memory() -> str:
    """Raise glibc's trim and mmap thresholds (``mallopt``) so that freed memory stays in the
    process: a later allocation then reuses it instead of page-faulting fresh pages in. Returns a
    description for the report."""
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(m_mmap_threshold, 256 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError) as exc:
        return f"default (mallopt unavailable: {exc})"
    return ("glibc, heap trimming off (M_MMAP_THRESHOLD 256 MiB, M_TRIM_THRESHOLD 1 GiB)" if ok
            else "default (mallopt refused)")


def main(argv: list[str] | None = None) -> int:
    global _CLOCK
    args = parse_args(argv)
    allocator = keep_freed_heap_memory() if args.no_heap_trim else "default"
    torch.set_num_threads(args.threads)
    _CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    sizes = args.sizes
    cands = candidates(args.device, args.compile)
    results = []
    for i, (steps, shape) in enumerate(sizes, 1):
        print(f"[{i}/{len(sizes)}] T={steps} shape={list(shape)} ...", file=sys.stderr,
              flush=True)
        results.append(bench_size(steps, shape, cands, args))
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                         else sys.argv[1:])]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "device": args.device,
        "device_name": (torch.cuda.get_device_name() if args.device == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "clock": args.clock,
        "allocator": allocator,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "settle": args.settle,
        "baseline": BASELINE,
        "main_size": [MAIN_SIZE[0], *MAIN_SIZE[1]],
        "floor_bytes_per_neuron_step": {"fwd": FWD_BYTES, "fwd_bwd": FWD_BWD_BYTES},
        "sizes": results,
    }
    text = table(results)
    print(text)
    write_text(args.out, json.dumps(report, indent=1) + "\n")
    if args.markdown:
        write_text(args.markdown, text + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
