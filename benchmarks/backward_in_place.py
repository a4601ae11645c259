"""Does writing dL/dx over the kept σ(M) pay? The eager ILIF backward both ways, A/B in one process.

    python benchmarks/backward_in_place.py                  # 3 rounds of each part
    python benchmarks/backward_in_place.py --parts neuron --rounds 10
    python benchmarks/backward_in_place.py --precision bf16-cl      # bfloat16: over σ's code

An eager ILIF backward writes dL/dx over the σ(M) its forward kept (float32; in bfloat16 over
its 16-bit code)
(``ilif.kernels.cpu.BACKWARD_IN_PLACE = True``, the default), or into a buffer of its own
(``False``, what the ``torch.library`` operators do). Two parts, each alternating the two ways
``--rounds`` times in one process, 2 threads, in the ``--precision`` of
``benchmarks/train_step.py`` (``fp32``, or ``bf16-cl``: bfloat16 input to the layer; bf16
autocast and channels_last for the step):

- ``neuron``: one ILIF layer, forward + dL/dx on [6, 32, 64, 16, 16], ``--calls`` timed calls
  per way and round; medians of the forward, the backward and both.
- ``step``: the ResNet-18 (T = 6, batch 16) training step of ``benchmarks/train_step.py``, with
  its neuron-free network as the limit; the overhead over the limit per way.

Both ways must give the same spikes and gradients (checked every round). Printed, and written as
JSON (``--out``). Discussion: docs/performance.md ("Where dL/dx goes").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import RESULTS, Step, build, commit  # noqa: E402

from ilif.files import write_json  # noqa: E402
from ilif.kernels import cpu  # noqa: E402
from ilif.models import create_model  # noqa: E402
from ilif.neurons import ILIF  # noqa: E402

WAYS = {"own buffer": False, "over sigma": True}


def neuron_part(rounds: int, calls: int, precision: str) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    shape = (6, 32, 64, 16, 16)
    dtype = torch.bfloat16 if precision == "bf16-cl" else torch.float32
    x = (torch.randn(shape, generator=gen) * 1.5 + 0.3).to(dtype).requires_grad_()
    grad = torch.randn(shape, generator=gen).to(dtype)
    layer = ILIF(backend="cpu")
    times: dict[str, dict[str, list[float]]] = {w: {"forward": [], "backward": [], "both": []}
                                                for w in WAYS}
    for _ in range(rounds):
        outputs = {}
        for way, in_place in WAYS.items():
            cpu.BACKWARD_IN_PLACE = in_place
            for k in range(calls + 1):  # the first call of each way is not timed
                layer.reset()
                t0 = time.perf_counter()
                spikes = layer(x)
                t1 = time.perf_counter()
                (gx,) = torch.autograd.grad(spikes, x, grad)
                t2 = time.perf_counter()
                if k:
                    for key, value in (("forward", t1 - t0), ("backward", t2 - t1),
                                       ("both", t2 - t0)):
                        times[way][key].append(value * 1e3)
            outputs[way] = (spikes, gx)
        (s_a, g_a), (s_b, g_b) = outputs.values()
        if not (torch.equal(s_a, s_b) and torch.equal(g_a, g_b)):
            raise SystemExit("the two ways gave different spikes or gradients")
    medians = {w: {k: statistics.median(v) for k, v in t.items()} for w, t in times.items()}
    for way, m in medians.items():
        print(f"neuron, {way}: forward {m['forward']:.2f} ms, backward {m['backward']:.2f} ms, "
              f"both {m['both']:.2f} ms")
    ratio = medians["over sigma"]["both"] / medians["own buffer"]["both"]
    print(f"neuron: over sigma / own buffer = {ratio:.3f}")
    return {"shape": list(shape), "calls_per_round": calls, "median_ms": medians,
            "over_sigma_over_own_buffer": ratio}


def step_part(rounds: int, precision: str) -> dict[str, Any]:
    torch.manual_seed(0)
    base = create_model("resnet18", neuron="ilif", T=6, num_classes=10)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    ilif_step = Step(build("resnet18", 6, "ilif", base), precision, x, y)
    limit = Step(build("resnet18", 6, "identity", base), precision, x, y)
    ilif_step()
    limit()
    times: dict[str, list[float]] = {**{w: [] for w in WAYS}, "limit": []}
    for _ in range(rounds):
        for way, in_place in WAYS.items():
            cpu.BACKWARD_IN_PLACE = in_place
            times[way].append(ilif_step() * 1e3)
        times["limit"].append(limit() * 1e3)
    medians = {k: statistics.median(v) for k, v in times.items()}
    overhead = {w: medians[w] / medians["limit"] - 1 for w in WAYS}
    for way in WAYS:
        print(f"step, {way}: {medians[way]:.0f} ms, overhead {100 * overhead[way]:+.1f} %")
    print(f"step, limit: {medians['limit']:.0f} ms")
    return {"model": "resnet18", "T": 6, "batch": 16, "precision": precision,
            "median_ms": medians, "overhead": overhead}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="neuron,step", help="comma-separated: neuron, step")
    p.add_argument("--rounds", type=int, default=3, help="alternations of the two ways (3)")
    p.add_argument("--calls", type=int, default=10, help="timed neuron calls per way and round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16-cl"), default="fp32",
                   help="fp32, or bf16-cl: bfloat16 (autocast and channels_last in the step)")
    p.add_argument("--out", type=Path, default=RESULTS / "backward-in-place-cpu.json")
    args = p.parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(parts) - {"neuron", "step"})
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)} (choose from neuron, step)")
    if args.rounds < 1 or args.calls < 1:
        p.error("--rounds and --calls must be >= 1")
    torch.set_num_threads(args.threads)
    command = " ".join(["backward_in_place.py", *(argv if argv is not None else sys.argv[1:])])
    report: dict[str, Any] = {"command": command,
                              "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                              "commit": commit(), "threads": args.threads, "rounds": args.rounds,
                              "precision": args.precision}
    try:
        if "neuron" in parts:
            report["neuron"] = neuron_part(args.rounds, args.calls, args.precision)
        if "step" in parts:
            report["step"] = step_part(args.rounds, args.precision)
    finally:
        cpu.BACKWARD_IN_PLACE = True
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
