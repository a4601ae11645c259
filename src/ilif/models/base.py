"""The shared frame of the spiking models: input encoding, state reset, ``[T, N, classes]`` out."""

from __future__ import annotations

from torch import Tensor, nn

from ilif.models.layers import fold_time
from ilif.neurons import reset_net


class SpikingModel(nn.Module):
    """A network on sequences ``[T, N, ...]`` with a classifier read out at every step.

    Input: a static batch ``[N, C, H, W]`` is repeated ``T`` times (direct encoding); an event
    batch ``[N, T', C, H, W]`` (as a DataLoader stacks event frames) is used as it is, with its own
    ``T'`` steps. Output: ``[T, N, classes]``, one readout ``O_t`` per step. Every forward starts
    from zero neuron state (the model resets its neurons itself), so after a forward the neurons
    keep their final state detached: it holds no autograd graph beyond the output's.

    ``stem_once=True`` (the default): a static batch is repeated as a view (stride 0 in T), and
    the stem (the stateless layers before the first neuron, built with
    ``TimeDistributed(..., once=True)``) runs once on ``[N, ...]``; its output is repeated over
    the T steps. Equal to the stem on the repeated batch up to float rounding, BN's running
    statistics included (:func:`ilif.models.layers.repeated_batch_norm`, docs/performance.md).
    ``stem_once=False``: the repeated batch is materialised and the stem runs on all ``T·N``.
    """

    def __init__(self, T: int, stem_once: bool = True) -> None:
        super().__init__()
        T = int(T)
        if T < 1:
            raise ValueError(f"T (time steps) must be >= 1, got T={T}")
        self.T = T
        self.stem_once = bool(stem_once)

    def encode(self, x: Tensor) -> Tensor:
        """Static ``[N, C, H, W] -> [T, N, C, H, W]`` (repeated) or events
        ``[N, T', C, H, W] -> [T', N, C, H, W]``."""
        if x.dim() == 4:
            seq = x.unsqueeze(0).expand(self.T, *x.shape)
            return seq if self.stem_once else fold_time(seq).view(seq.shape)
        if x.dim() == 5:
            return x.transpose(0, 1)
        raise ValueError(
            f"{type(self).__name__} expects images [N, C, H, W] or event frames [N, T, C, H, W], "
            f"got shape {tuple(x.shape)}"
        )

    def forward(self, x: Tensor) -> Tensor:
        reset_net(self)
        if not x.is_floating_point():
            x = x.float()
        out = self.forward_sequence(self.encode(x))
        for module in self.modules():
            detach = getattr(module, "detach_state", None)
            if callable(detach):
                detach()
        return out

    def forward_sequence(self, x_seq: Tensor) -> Tensor:
        """``[T, N, C, H, W] -> [T, N, classes]``."""
        raise NotImplementedError
