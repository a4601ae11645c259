"""What the measurement monitors cost a training step: the fused ILIF layer's forward+backward on
the main size [6, 32, 64, 16, 16] alone, with a ``SpikeMonitor``, and with a ``GradientMonitor``
(2 threads, wall clock, the variants interleaved; medians and ratios to the plain layer).

    python benchmarks/monitors.py [--repeats 15] [--out benchmarks/results/monitors-cpu.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ilif.analysis import GradientMonitor, SpikeMonitor
from ilif.files import write_json
from ilif.neurons import ILIF

SHAPE = (6, 32, 64, 16, 16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent / "results" / "monitors-cpu.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen) * 1.5 + 0.3
    grad_out = torch.randn(SHAPE, generator=gen)
    models = {name: nn.Sequential(ILIF(backend="cpu")) for name in ("plain", "spikes", "grads")}
    monitors = {"spikes": SpikeMonitor(models["spikes"]), "grads": GradientMonitor(models["grads"])}

    def step(model: nn.Module) -> None:
        model[0].reset()
        # a fresh leaf per step, as a batch is: the gradient monitor hooks the layer's input
        inp = x.detach().requires_grad_()
        torch.autograd.grad(model(inp), inp, grad_out)

    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(3):
        for model in models.values():
            step(model)
    for _ in range(args.repeats):
        for name, model in models.items():
            t0 = time.perf_counter()
            step(model)
            times[name].append((time.perf_counter() - t0) * 1e3)
    for monitor in monitors.values():
        monitor.close()
    ms = {name: statistics.median(t) for name, t in times.items()}
    report = {"shape": list(SHAPE), "threads": args.threads, "repeats": args.repeats,
              "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
              "fwd_bwd_ms": ms, "ratio_to_plain": {k: v / ms["plain"] for k, v in ms.items()}}
    for name, value in ms.items():
        print(f"{name}: {value:.2f} ms ({value / ms['plain']:.2f}x the plain layer)")
    write_json(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
