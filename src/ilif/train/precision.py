"""Mixed precision: which autocast type a run uses, the autocast context and the gradient scaler.

=========  ==========================  ===========================================
``amp``    CPU                         CUDA
=========  ==========================  ===========================================
unset      float32 (no autocast)       float16 autocast + gradient scaling
``True``   bfloat16 autocast           float16 + scaling (``amp_dtype: bf16``: bfloat16)
``False``  float32                     float32
=========  ==========================  ===========================================

The loss is computed in float32 on the autocast outputs; only float16 needs the gradient scaler
(bfloat16 has float32's exponent range). See docs/training.md.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

_NAMED = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_dtype(device: torch.device, amp: bool | None, amp_dtype: str = "auto"
                   ) -> torch.dtype | None:
    """The autocast type of a run on ``device`` (None: full float32); see the table above."""
    if amp_dtype not in ("auto", *_NAMED):
        raise ValueError(f"amp_dtype must be auto, fp16 or bf16, got {amp_dtype!r}")
    if amp is False or (amp is None and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return _NAMED.get(amp_dtype, torch.float16)
    if amp_dtype == "fp16":
        raise ValueError("amp_dtype fp16 is for CUDA; on the CPU use amp_dtype bf16 (or auto)")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | bool | None
             ) -> AbstractContextManager[object]:
    """``torch.autocast`` of ``dtype`` on ``device``'s type; ``None``/``False``: nothing.
    ``True`` keeps the older meaning: float16 on CUDA, nothing on the CPU."""
    if dtype is True:
        dtype = torch.float16 if device.type == "cuda" else None
    if not dtype:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for float16 on CUDA only."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16 and device.type == "cuda")
