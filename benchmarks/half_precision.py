"""The fused CPU ILIF layer in bfloat16: native kernels against the float32 boundary cast and
against float32 input, forward + input gradient.

    python benchmarks/half_precision.py                    # 3 processes, [6, 32, 64, 16, 16]
    python benchmarks/half_precision.py --quick --out /tmp/half.json

Three set-ups, timed interleaved in one process (``--repeats`` timed runs each, after
``--warmup`` runs; every timed run follows one untimed run of the same set-up):

- ``float32``: float32 input, the fused kernels;
- ``bf16 native``: bfloat16 input, the kernels read x and dL/dS and write the spikes and dL/dx in
  bfloat16 (float32 inside);
- ``bf16 cast``: bfloat16 input cast to float32 before the fused layer and its spikes back to
  bfloat16 after it (the cast's gradients give dL/dx in bfloat16): what the operator did for
  bfloat16 before it read bfloat16 itself.

Each timing is ``layer(x)`` plus ``torch.autograd.grad(spikes, x, grad_output)``. The parent
process runs ``--processes`` child processes one after another and reports the median over the
processes of each child's median, and the ratios of those; also the bytes autograd saves per
neuron-step besides ``x`` and ``x``'s own bytes. Printed, and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ilif.files import write_text
from ilif.neurons import ILIF

SETUPS = ("float32", "bf16 native", "bf16 cast")


def _setups(shape: tuple[int, ...]) -> dict[str, Callable[[], torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x32 = torch.randn(shape, generator=gen) * 1.5 + 0.4
    g32 = torch.randn(shape, generator=gen)
    x16, g16 = x32.to(torch.bfloat16), g32.to(torch.bfloat16)
    layer = ILIF(backend="cpu", tau=2.0)

    def plain(x, g):
        def run():
            layer.reset()
            xx = x.detach().requires_grad_()
            return torch.autograd.grad(layer(xx), xx, g)[0]
        return run

    def cast():
        layer.reset()
        xx = x16.detach().requires_grad_()
        spikes = layer(xx.float()).to(torch.bfloat16)
        return torch.autograd.grad(spikes, xx, g16)[0]

    return {"float32": plain(x32, g32), "bf16 native": plain(x16, g16), "bf16 cast": cast}


def _saved_bytes(run: Callable[[], torch.Tensor], shape: tuple[int, ...]) -> float:
    """Bytes autograd saves during one forward + backward, per neuron-step, counting each
    storage once (x included: the cast saves its own float32 copy)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    n = 1
    for s in shape:
        n *= s
    return sum(seen.values()) / n


def child(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    runs = _setups(shape)
    times: dict[str, list[float]] = {k: [] for k in SETUPS}
    for _ in range(args.warmup):
        for run in runs.values():
            run()
    for _ in range(args.repeats):
        for name, run in runs.items():
            run()  # settle: the timed run follows one of the same set-up
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {"median_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
            "saved_bytes_per_neuron_step": {k: _saved_bytes(runs[k], shape) for k in SETUPS}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[6, 32, 64, 16, 16],
                   help="the input shape [T, ...] (default: 6 32 64 16 16)")
    p.add_argument("--processes", type=int, default=3, help="separate processes (default 3)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per set-up (default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--quick", action="store_true", help="a small input, 1 process, 2 repeats")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/half_precision.json"),
                   help="JSON output (default benchmarks/results/half_precision.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.shape, args.processes, args.repeats, args.warmup = [4, 2, 8, 8, 8], 1, 2, 1
    if args.processes < 1 or args.repeats < 1:
        p.error("--processes and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    forwarded = ["--shape", *map(str, args.shape), "--repeats", str(args.repeats),
                 "--warmup", str(args.warmup), "--threads", str(args.threads)]
    per_process = []
    for i in range(args.processes):
        print(f"[{i + 1}/{args.processes}] process ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", *forwarded], check=True,
                             capture_output=True, text=True).stdout
        per_process.append(json.loads(out.strip().splitlines()[-1]))
    median = {k: statistics.median(p["median_ms"][k] for p in per_process) for k in SETUPS}
    ratios = {
        "bf16 cast / bf16 native": median["bf16 cast"] / median["bf16 native"],
        "float32 / bf16 native": median["float32"] / median["bf16 native"],
        "bf16 cast / float32": median["bf16 cast"] / median["float32"],
    }
    saved = per_process[0]["saved_bytes_per_neuron_step"]
    lines = [f"ILIF fused CPU forward + dL/dx, shape {args.shape}, {args.threads} threads, "
             f"median of {args.processes} processes x {args.repeats} runs",
             f"{'set-up':<14}{'ms':>10}{'saved B/neuron-step':>22}"]
    lines += [f"{k:<14}{median[k]:>10.2f}{saved[k]:>22.2f}" for k in SETUPS]
    lines += [f"{k}: {v:.2f}x" for k, v in ratios.items()]
    print("\n".join(lines))
    report = {"command": " ".join(["benchmarks/half_precision.py", *(argv or sys.argv[1:])]),
              "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
              "torch": torch.__version__, "shape": args.shape, "threads": args.threads,
              "median_ms": median, "ratios": ratios, "saved_bytes_per_neuron_step": saved,
              "per_process": per_process}
    write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
