"""Mixed precision, gradient accumulation, the global batch, the training sampler and the rank-0
helpers (single process; the multi-process runs are in test_train_ddp.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ilif.data import DatasetError
from ilif.train import TrainConfig
from ilif.train.cli import one_line
from ilif.train.data import start_epoch, train_loader
from ilif.train.distributed import DistContext, is_rank_zero, rank_prefix
from ilif.train.loop import train_one_epoch
from ilif.train.loss import SpikingLoss, topk_correct
from ilif.train.precision import autocast, autocast_dtype, grad_scaler
from ilif.train.runner import steps_per_update, use_sync_batchnorm

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_autocast_types():
    assert autocast_dtype(CPU, None) is None  # the default keeps the CPU in float32
    assert autocast_dtype(CPU, True) is torch.bfloat16
    assert autocast_dtype(CPU, False) is None
    assert autocast_dtype(CUDA, None) is torch.float16
    assert autocast_dtype(CUDA, True, "bf16") is torch.bfloat16
    assert autocast_dtype(CUDA, False) is None
    with pytest.raises(ValueError, match="amp_dtype fp16 is for CUDA"):
        autocast_dtype(CPU, True, "fp16")
    if torch.cuda.is_available():
        assert grad_scaler(CUDA, torch.float16).is_enabled()
        assert not grad_scaler(CUDA, torch.bfloat16).is_enabled()
    assert not grad_scaler(CPU, torch.bfloat16).is_enabled()
    layer = nn.Linear(4, 3)
    with autocast(CPU, torch.bfloat16):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast(CPU, None):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


class Readout(nn.Module):
    """A BN-free model giving ``[T=1, N, K]`` readouts: its gradient is a plain mean over
    samples, so accumulation must reproduce the big batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x).unsqueeze(0)


def _train(batch: int, accumulate: int, amp=None) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = Readout()
    data = TensorDataset(torch.randn(16, 6, generator=torch.Generator().manual_seed(1)),
                         torch.arange(16) % 3)
    loader = DataLoader(data, batch_size=batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    metrics = train_one_epoch(model, loader, optimizer, grad_scaler(CPU, None), SpikingLoss(),
                              CPU, epoch=1, progress=False, accumulate=accumulate, amp=amp)
    return model, metrics


def test_accumulated_batches_step_as_one_big_batch():
    big, big_metrics = _train(batch=8, accumulate=1)
    small, small_metrics = _train(batch=4, accumulate=2)
    for a, b in zip(big.parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert big_metrics["train_samples"] == small_metrics["train_samples"] == 16
    torch.testing.assert_close(big_metrics["train_loss"], small_metrics["train_loss"])
    # three batches of 4 with accumulate 2: the odd batch is skipped (one step of 8 samples)
    data = TensorDataset(torch.randn(12, 6), torch.arange(12) % 3)
    model = Readout()
    metrics = train_one_epoch(model, DataLoader(data, batch_size=4),
                              torch.optim.SGD(model.parameters(), lr=0.1),
                              grad_scaler(CPU, None), SpikingLoss(), CPU, epoch=1,
                              progress=False, accumulate=2)
    assert metrics["train_samples"] == 8


def test_bf16_autocast_trains_close_to_float32():
    full, _ = _train(batch=8, accumulate=1)
    half, metrics = _train(batch=8, accumulate=1, amp=torch.bfloat16)
    assert metrics["train_samples"] == 16
    for a, b in zip(full.parameters(), half.parameters(), strict=True):
        assert a.dtype == b.dtype == torch.float32  # the weights stay float32
        torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)
        assert not torch.equal(a, b)  # bfloat16 did round the products


def test_global_batch_sets_the_accumulation_per_world_size():
    config = TrainConfig(batch_size=8, global_batch=32)
    assert [steps_per_update(config, w) for w in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(ValueError, match=r"global_batch=32 is not a multiple of batch_size × "
                                         r"processes = 8 × 3 = 24"):
        steps_per_update(config, 3)
    assert steps_per_update(TrainConfig(accumulate=3), 2) == 3


def test_a_step_sees_the_same_samples_on_one_or_two_processes():
    """Epoch e's order is one permutation; two processes of batch B take its interleaved halves,
    one process with 2 accumulated batches of B takes it in runs: each optimiser step covers the
    same 2B samples."""
    dataset = TensorDataset(torch.arange(40))
    config = TrainConfig(batch_size=4, seed=7)

    def batches(ctx):
        loader = train_loader(dataset, config, ctx, pin=False)
        start_epoch(loader, config.seed, 3, ctx.rank)
        return [set(b[0].tolist()) for b in loader]

    alone = batches(DistContext())
    ranks = [batches(DistContext(rank=r, world_size=2)) for r in (0, 1)]
    steps_alone = [alone[2 * i] | alone[2 * i + 1] for i in range(5)]
    steps_two = [ranks[0][i] | ranks[1][i] for i in range(5)]
    assert steps_alone == steps_two
    assert set().union(*steps_alone) == set(range(40))
    # a new epoch, a new order
    loader = train_loader(dataset, config, DistContext(), pin=False)
    start_epoch(loader, config.seed, 4)
    assert [set(b[0].tolist()) for b in loader] != alone


def test_topk_counts_labels_among_the_largest_summed_readouts():
    outputs = torch.tensor([[[0.0, 3.0, 1.0, 2.0]], [[0.0, 3.0, 1.0, 2.0]]])  # [T=2, N=1, K=4]
    labels = torch.tensor([2])
    assert [topk_correct(outputs, labels, k) for k in (1, 2, 3, 5)] == [0, 0, 1, 1]


def test_sync_batchnorm_converts_every_bn_and_refuses_the_cpu():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.BatchNorm2d(2)))
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        use_sync_batchnorm(model, CPU)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == 2


def test_rank_zero_and_prefix_follow_the_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not is_rank_zero() and rank_prefix() == "[rank 1/2] "
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert is_rank_zero() and rank_prefix() == ""


class _Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise DatasetError(f"imagenet: cannot decode image file /data/{index}.JPEG")


def test_worker_errors_shrink_to_the_original_message():
    with pytest.raises(DatasetError) as caught:
        next(iter(DataLoader(_Broken(), num_workers=1)))
    assert "Traceback" in str(caught.value)  # PyTorch's re-raise embeds the worker's traceback
    assert one_line(caught.value) == "imagenet: cannot decode image file /data/0.JPEG"
    assert one_line(ValueError("plain")) == "plain"
