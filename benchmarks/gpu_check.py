"""GPU check of the Triton kernels: correctness against the eager loop on CUDA, then the speed of
ILIF forward+backward against the device-to-device copy bandwidth and SpikingJelly's LIFNode.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json

Needs a CUDA GPU with Triton. Steps:

1. correctness on the GPU (T = 6, 2^20 neurons): LIF, ILIF (default, detached, CIU-only), CLIF
   with the Triton kernels vs ``backend="torch"``: spike mismatches (expected 0) and the largest
   gradient error relative to the largest gradient (expected < 1e-5);
2. the copy bandwidth: ``dst.copy_(src)`` on 1 GiB, bytes read + written over the time;
3. ILIF (and LIF, CLIF) forward+backward on ``x[T, N]`` (T = 6, N = 16M): the kernels alone
   (``run_forward`` + ``run_backward`` on prepared operands) and the autograd path (forward plus
   ``torch.autograd.grad`` of the spikes with respect to x). The bytes that must move are 20 per
   neuron-step in float32 (forward: read x, write S; backward: read dL/dS and x, write dL/dx);
   ``bandwidth_ratio = 20·T·N / time / copy bandwidth`` (target ≥ 0.7);
4. the ILIF kernels per block size (forward and backward apart), to choose the defaults;
5. SpikingJelly's multi-step ``LIFNode`` (soft reset, decay_input=False) with each CUDA
   implementation it offers (``SJ_LIF_CUDA_IMPLEMENTATION`` = cuda, triton, torch; one
   subprocess each, since SpikingJelly reads the variable at import), forward + grad of x; the
   fastest one that runs is the baseline (target: ILIF faster).

Times are CUDA-event medians of ``--repeats`` runs after ``--warmup`` runs. Results are printed and
written as JSON (atomically). SpikingJelly is skipped cleanly when it does not import; on a
machine without it, carry wheels of ``spikingjelly`` and ``loguru``. ``--cpu-interpret`` runs the
whole script on tiny CPU tensors through Triton's interpreter (a check of the script itself; its
timings mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BYTES_PER_NEURON_STEP = 20  # float32: fwd read x + write S, bwd read dL/dS + x, write dL/dx
SJ_IMPLEMENTATIONS = ("cuda", "triton", "torch")


DEVICE = "cuda"  # "cpu" with --cpu-interpret


def cuda_median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median CUDA-event time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    if DEVICE == "cpu":
        return statistics.median(_wall_seconds(fn) for _ in range(repeats))
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _wall_seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _empty_cache() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def copy_bandwidth(repeats: int, warmup: int, nbytes: int = 1 << 30) -> dict:
    """Device-to-device copy: (bytes read + bytes written) / time."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEVICE).uniform_()
    dst = torch.empty_like(src)
    seconds = cuda_median_seconds(lambda: dst.copy_(src), repeats, warmup)
    return {"bytes": 2 * nbytes, "seconds": seconds, "bytes_per_s": 2 * nbytes / seconds}


def make_neuron(kind: str, **kwargs):
    from ilif.neurons.modules import create_neuron

    return create_neuron(kind, backend="torch", **kwargs)


def random_input(steps: int, neurons: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x = torch.randn(steps, neurons, device=DEVICE, generator=gen) * 1.2 + 0.7
    return x.requires_grad_()


def correctness(steps: int, neurons: int) -> list[dict]:
    """Triton vs the eager loop on the GPU, per neuron configuration."""
    from ilif.kernels.triton_kernels import triton_multi_step

    cases = [
        ("lif", {"tau": 2.0}),
        ("ilif", {"tau": 1.1}),
        ("ilif", {"tau": 1.1, "detach_reset": True, "detach_inhibition": True,
                  "surrogate": "sigmoid", "width": 0.5}),
        ("ilif-ciu", {"tau": 1.1, "surrogate": "triangle", "width": 2.0}),
        ("clif", {"tau": 2.0, "surrogate": "atan", "width": 1.0}),
    ]
    rows = []
    for index, (kind, kwargs) in enumerate(cases):
        neuron = make_neuron(kind, **kwargs)
        x = random_input(steps, neurons, seed=index)
        upstream = torch.randn_like(x)
        state = neuron.initial_state(x[0])
        spikes, _, _ = triton_multi_step(neuron.fused_form(), x, state, False)
        (grad,) = torch.autograd.grad(spikes, x, upstream)
        ref_spikes, _, _ = neuron.multi_step_torch(x, state)
        (ref_grad,) = torch.autograd.grad(ref_spikes, x, upstream)
        scale = ref_grad.abs().max().item()
        error = (grad - ref_grad).abs()
        rows.append({
            "neuron": kind,
            "options": {k: v for k, v in kwargs.items()},
            "spike_mismatches": int((spikes != ref_spikes).sum().item()),
            "spike_rate": ref_spikes.float().mean().item(),
            "grad_max_error_over_max_grad": error.max().item() / max(scale, 1e-30),
            "grad_elements_off_1e-5": int((error > 1e-5 * ref_grad.abs() + 1e-6).sum().item()),
        })
        del x, upstream, spikes, grad, ref_spikes, ref_grad
    _empty_cache()
    return rows


def time_ilif_family(kind: str, steps: int, neurons: int, repeats: int, warmup: int) -> dict:
    """Kernel-only and autograd forward+backward times of one of our neurons (float32)."""
    from ilif.kernels.triton_kernels import prepare, run_backward, run_forward, triton_multi_step

    neuron = make_neuron(kind, tau=1.1 if kind.startswith("ilif") else 2.0)
    x = random_input(steps, neurons, seed=7)
    upstream = torch.randn_like(x)
    state = neuron.initial_state(x[0])
    call = prepare(neuron.fused_form(), x.detach(), state)
    assert call is not None, f"the Triton kernels declined {kind}"

    def kernels_forward():
        return run_forward(call, False)

    def kernels_forward_backward():
        run_forward(call, False)
        return run_backward(call, upstream)

    def autograd_forward_backward():
        spikes, _, _ = triton_multi_step(neuron.fused_form(), x, state, False)
        return torch.autograd.grad(spikes, x, upstream)

    fwd = cuda_median_seconds(kernels_forward, repeats, warmup)
    both = cuda_median_seconds(kernels_forward_backward, repeats, warmup)
    auto = cuda_median_seconds(autograd_forward_backward, repeats, warmup)
    moved = BYTES_PER_NEURON_STEP * steps * neurons
    return {
        "neuron": kind, "steps": steps, "neurons": neurons,
        "kernel_forward_s": fwd, "kernel_backward_s": both - fwd,
        "kernel_forward_backward_s": both, "autograd_forward_backward_s": auto,
        "bytes_moved": moved, "kernel_bytes_per_s": moved / both,
    }


def block_sweep(steps: int, neurons: int, repeats: int, warmup: int) -> dict:
    """ILIF kernel times per block size (forward and backward apart), to choose the defaults."""
    from ilif.kernels.triton_kernels import prepare, run_backward, run_forward

    neuron = make_neuron("ilif", tau=1.1)
    x = random_input(steps, neurons, seed=7).detach()
    upstream = torch.randn_like(x)
    call = prepare(neuron.fused_form(), x, neuron.initial_state(x[0]))
    def timed(fn: Callable[[], object]) -> float:
        return cuda_median_seconds(fn, repeats, warmup)

    forward = {
        block: timed(lambda b=block: run_forward(call, False, block=b))
        for block in (128, 256, 512, 1024)
    }
    backward = {
        block: timed(lambda b=block: run_backward(call, upstream, block=b))
        for block in (128, 256)
    }
    return {
        "forward_s": forward, "backward_s": backward,
        "best_forward_block": min(forward, key=forward.get),
        "best_backward_block": min(backward, key=backward.get),
    }


def sj_worker(implementation: str, steps: int, neurons: int, repeats: int, warmup: int) -> dict:
    """In a subprocess whose SJ_LIF_CUDA_IMPLEMENTATION is set: time SpikingJelly's LIFNode."""
    from spikingjelly.activation_based import neuron as sj_neuron

    node = sj_neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None, step_mode="m").to(DEVICE)
    x = random_input(steps, neurons, seed=7)
    upstream = torch.randn_like(x)

    def forward_backward():
        node.reset()
        spikes = node(x)
        return torch.autograd.grad(spikes, x, upstream)

    seconds = cuda_median_seconds(forward_backward, repeats, warmup)
    return {"implementation": implementation, "forward_backward_s": seconds}


def spikingjelly_times(steps: int, neurons: int, repeats: int, warmup: int) -> list[dict]:
    rows = []
    for implementation in SJ_IMPLEMENTATIONS:
        env = {**os.environ, "SJ_LIF_CUDA_IMPLEMENTATION": implementation}
        command = [
            sys.executable, __file__, "--sj-worker", implementation, "--steps", str(steps),
            "--neurons", str(neurons), "--repeats", str(repeats), "--warmup", str(warmup),
        ]
        if DEVICE == "cpu":
            command.append("--cpu-interpret")
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode == 0 and lines:
            row = json.loads(lines[-1])
        else:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            row = {"implementation": implementation, "error": " | ".join(tail)}
        row["wall_s"] = time.perf_counter() - started
        print(f"  spikingjelly LIFNode [{implementation}]: {row}", flush=True)
        rows.append(row)
    return rows


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        json.dump(payload, fh, indent=2)
        tmp = fh.name
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--neurons", type=int, default=1 << 24, help="neurons per step (16M)")
    parser.add_argument("--check-neurons", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--skip-peers", action="store_true", help="do not time SpikingJelly")
    parser.add_argument("--sj-worker", choices=SJ_IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--cpu-interpret", action="store_true",
        help="check this script on CPU through Triton's interpreter (use tiny --neurons)",
    )
    args = parser.parse_args(argv)

    global DEVICE
    if args.cpu_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
        DEVICE = "cpu"
        args.check_neurons = min(args.check_neurons, args.neurons)
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run it on "
              "a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    if args.sj_worker:
        print(json.dumps(sj_worker(args.sj_worker, args.steps, args.neurons, args.repeats,
                                   args.warmup)))
        return 0

    import triton

    from ilif.kernels.triton_kernels import triton_available

    if not triton_available():
        print("gpu_check: triton does not import; install the 'triton' extra", file=sys.stderr)
        return 2
    result: dict = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (interpreter)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "command": " ".join([sys.executable, *sys.argv]),
        "steps": args.steps, "neurons": args.neurons,
        "repeats": args.repeats, "warmup": args.warmup,
    }
    started = time.perf_counter()
    print(f"[{time.perf_counter() - started:6.1f}s] correctness, T={args.steps}, "
          f"N={args.check_neurons} (compiles the kernels)", flush=True)
    result["correctness"] = correctness(args.steps, args.check_neurons)
    for row in result["correctness"]:
        print(f"  {row}", flush=True)

    print(f"[{time.perf_counter() - started:6.1f}s] copy bandwidth", flush=True)
    copy_bytes = 1 << (30 if DEVICE == "cuda" else 22)
    result["copy"] = copy = copy_bandwidth(args.repeats, args.warmup, copy_bytes)
    _empty_cache()
    print(f"  {copy['bytes_per_s'] / 1e12:.2f} TB/s", flush=True)

    result["ours"] = []
    for kind in ("ilif", "lif", "clif"):
        print(f"[{time.perf_counter() - started:6.1f}s] {kind} T={args.steps} N={args.neurons}",
              flush=True)
        row = time_ilif_family(kind, args.steps, args.neurons, args.repeats, args.warmup)
        _empty_cache()
        row["bandwidth_ratio"] = row["kernel_bytes_per_s"] / copy["bytes_per_s"]
        result["ours"].append(row)
        print(f"  {row}", flush=True)
        write_json_atomic(args.out, result)  # keep what is measured if a later step fails

    print(f"[{time.perf_counter() - started:6.1f}s] ILIF block sizes", flush=True)
    result["block_sweep"] = sweep = block_sweep(args.steps, args.neurons, args.repeats, args.warmup)
    _empty_cache()
    print(f"  {sweep}", flush=True)

    ilif = result["ours"][0]
    summary = {
        "ilif_kernel_forward_backward_ms": 1e3 * ilif["kernel_forward_backward_s"],
        "ilif_autograd_forward_backward_ms": 1e3 * ilif["autograd_forward_backward_s"],
        "ilif_bandwidth_ratio": ilif["bandwidth_ratio"],
        "ilif_bandwidth_target_met": ilif["bandwidth_ratio"] >= 0.7,
    }
    if not args.skip_peers:
        print(f"[{time.perf_counter() - started:6.1f}s] SpikingJelly LIFNode", flush=True)
        result["spikingjelly"] = rows = spikingjelly_times(
            args.steps, args.neurons, args.repeats, args.warmup
        )
        timed = [r for r in rows if "forward_backward_s" in r]
        if timed:
            best = min(timed, key=lambda r: r["forward_backward_s"])
            summary["spikingjelly_fastest"] = best["implementation"]
            summary["spikingjelly_forward_backward_ms"] = 1e3 * best["forward_backward_s"]
            summary["ilif_speedup_vs_spikingjelly_autograd"] = (
                best["forward_backward_s"] / ilif["autograd_forward_backward_s"]
            )
            summary["ilif_speedup_vs_spikingjelly_kernels"] = (
                best["forward_backward_s"] / ilif["kernel_forward_backward_s"]
            )
    result["summary"] = summary
    result["wall_s"] = time.perf_counter() - started
    write_json_atomic(args.out, result)

    print("\nsummary")
    for key, value in summary.items():
        shown = f"{value:.3f}" if isinstance(value, float) and math.isfinite(value) else value
        print(f"  {key:42s} {shown}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
