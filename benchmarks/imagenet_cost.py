"""An ESTIMATE of what an ImageNet run costs on GPUs, from counted operations and an assumed
throughput (no GPU measured it): multiply-accumulates of the convolutions and the classifier per
224×224 sample and time step (hooks on the modules of one forward pass), the bytes autograd keeps
for the backward per sample (a saved-tensors hook, float32 as run here; the half-precision figure
halves the convolution and BN inputs), and from them GPU-hours for the recipe of
configs/imagenet-resnet34.yaml.

    python benchmarks/imagenet_cost.py [--model sew-resnet34] [--neuron ilif] [--tflops 60]

GPU-hours = 3 · 2·MACs · T · (1,281,167 + 50,000/3) · epochs / (tflops · 10¹² · 3600)
(training: forward + backward ≈ 3 forwards; evaluation: one forward of the 50,000 validation
images per epoch). docs/training.md discusses the assumptions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from ilif.models import create_model  # noqa: E402

TRAIN_IMAGES, VAL_IMAGES = 1_281_167, 50_000


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv2d and Linear in one forward of ``x``."""
    total = 0

    def conv(module: nn.Conv2d, _inputs, out) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear(module: nn.Linear, _inputs, out) -> None:
        nonlocal total
        total += out.numel() * module.in_features

    handles = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear) for m in model.modules()
                if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return total


def saved_bytes(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(all bytes autograd saves for the backward of one forward, the share saved by Conv2d and
    BatchNorm inputs), distinct storages counted once."""
    seen: dict[int, int] = {}
    inputs: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    def remember(_module, args) -> None:
        inputs.add(args[0].untyped_storage().data_ptr())

    handles = [m.register_forward_pre_hook(remember) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    for handle in handles:
        handle.remove()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = sum(n for ptr, n in seen.items() if ptr not in parameters)
    conv_bn = sum(n for ptr, n in seen.items() if ptr in inputs)
    del out
    return total, conv_bn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sew-resnet34")
    p.add_argument("--neuron", default="ilif")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--epochs", type=int, default=320)
    p.add_argument("--batch-per-gpu", type=int, default=32)
    p.add_argument("--tflops", type=float, default=60.0,
                   help="ASSUMED sustained training throughput per GPU, 10¹² FLOP/s")
    p.add_argument("--backend", default="auto")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = create_model(args.model, neuron=args.neuron, num_classes=1000, T=1,
                         backend=args.backend)
    macs = count_macs(model, torch.randn(1, 3, 224, 224))
    model = create_model(args.model, neuron=args.neuron, num_classes=1000, T=args.T,
                         backend=args.backend)
    saved, conv_bn = saved_bytes(model, torch.randn(1, 3, 224, 224))
    params = sum(p.numel() for p in model.parameters())
    flop_step = 2 * macs * args.T  # per sample, forward
    work = 3 * flop_step * TRAIN_IMAGES + flop_step * VAL_IMAGES
    hours = work * args.epochs / (args.tflops * 1e12 * 3600)
    half = saved - conv_bn / 2  # conv and BN inputs in half precision under autocast
    state = params * 4 * 4  # float32 weights, gradients, momentum, and the float16 copies' room
    print(f"{args.model} / {args.neuron}, T={args.T}, 224×224 (ESTIMATE, no GPU measured)")
    print(f"  parameters                      {params:,}")
    print(f"  MACs per sample and step        {macs / 1e9:.3f} G (conv + linear)")
    print(f"  forward FLOP per sample         {flop_step / 1e9:.1f} G (2·MACs·T)")
    print(f"  saved for backward per sample   {saved / 2**20:.0f} MiB float32, "
          f"≈ {half / 2**20:.0f} MiB with half-precision conv/BN inputs")
    print(f"  memory per GPU at batch {args.batch_per_gpu:<3}     ≈ "
          f"{(half * args.batch_per_gpu + state) / 2**30:.1f} GiB (AMP; + workspace, "
          f"allocator slack) / {(saved * args.batch_per_gpu + state) / 2**30:.1f} GiB float32")
    print(f"  work per epoch                  {work / 1e15:,.0f} PFLOP")
    print(f"  GPU-hours for {args.epochs} epochs       ≈ {hours:,.0f} at an ASSUMED "
          f"{args.tflops:g} TFLOP/s sustained per GPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
