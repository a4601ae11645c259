"""Training: loss, prediction, schedule, config files and flags, runs, checkpoints, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ilif.cli import main as ilif_main
from ilif.train import (
    CheckpointError,
    ConfigError,
    NonFiniteLossError,
    SpikingLoss,
    TrainConfig,
    evaluate,
    load_checkpoint,
    predict,
    run_training,
)
from ilif.train.cli import resolve_config
from ilif.train.schedule import EpochSchedule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST = dict(dataset="digits", model="digits-small", T=2, batch_size=32, limit_train_batches=3,
            limit_eval_batches=2, quiet=True)


# ------------------------------------------------------------------------------- loss and rule
def test_loss_matches_a_hand_computed_value():
    # T = 2 steps, N = 1 sample, K = 2 classes, label 0
    outputs = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])
    labels = torch.tensor([0])
    ce = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    mse_constant = ((2 - 1) ** 2 + (0 - 1) ** 2 + (0 - 1) ** 2 + (1 - 1) ** 2) / 4
    mse_onehot = ((2 - 1) ** 2 + 0 + (0 - 1) ** 2 + (1 - 0) ** 2) / 4
    lam = 0.05
    assert SpikingLoss(lam)(outputs, labels).item() == pytest.approx(
        (1 - lam) * ce + lam * mse_constant, rel=1e-6)
    assert SpikingLoss(lam, target="onehot")(outputs, labels).item() == pytest.approx(
        (1 - lam) * ce + lam * mse_onehot, rel=1e-6)
    assert SpikingLoss(0.0)(outputs, labels).item() == pytest.approx(ce, rel=1e-6)
    # training and `ilif eval` build the loss from the config alike, label smoothing included
    config = TrainConfig(loss_lambda=lam, loss_target="onehot", label_smoothing=0.2)
    smoothed = torch.nn.functional.cross_entropy(
        outputs.reshape(-1, outputs.shape[-1]), labels.repeat(outputs.shape[0]),
        label_smoothing=0.2)
    assert SpikingLoss.from_config(config)(outputs, labels).item() == pytest.approx(
        (1 - lam) * smoothed.item() + lam * torch.nn.functional.mse_loss(
            outputs, torch.nn.functional.one_hot(labels, outputs.shape[-1]).float().expand_as(
                outputs)).item(), rel=1e-6)


def test_prediction_is_the_argmax_of_the_summed_readouts():
    # the last step alone would say class 1, the mean over steps says class 0
    outputs = torch.tensor([[[5.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]])
    assert predict(outputs).tolist() == [0]


# ------------------------------------------------------------------------------------ schedule
def test_cosine_schedule_follows_torch_and_is_rebuilt_for_a_new_total():
    def lrs(epochs):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        schedule = EpochSchedule(opt, "cosine", epochs)
        return [schedule.set_epoch(e) for e in range(epochs)]

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    expected = []
    for _ in range(7):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        torch_schedule.step()
    assert lrs(7) == pytest.approx(expected, rel=1e-9)
    assert lrs(12)[3] == pytest.approx(0.05 * (1 + math.cos(math.pi * 3 / 12)))


# -------------------------------------------------------------------------------------- config
def test_config_files_hold_the_papers_settings():
    # the paper's setting (docs/training.md):
    # dataset -> (model, T, batch, lr, weight decay, epochs, dropout, target)
    table = {
        "cifar10-resnet18": ("cifar10", "resnet18", 6, 128, 0.1, 5e-5, 200, 0.0, "constant"),
        "cifar100-resnet18": ("cifar100", "resnet18", 6, 128, 0.1, 5e-4, 200, 0.0, "constant"),
        "cifar10-dvs-vgg11": ("cifar10-dvs", "vgg11", 10, 128, 0.05, 5e-4, 200, 0.3, "onehot"),
        "dvs-gesture-vgg11": ("dvs-gesture", "vgg11", 20, 16, 0.1, 5e-4, 200, 0.4, "constant"),
    }
    for name, row in table.items():
        c = TrainConfig.from_yaml(CONFIGS / f"{name}.yaml")
        got = (c.dataset, c.model, c.T, c.batch_size, c.lr, c.weight_decay, c.epochs, c.dropout,
               c.loss_target)
        assert got == row, name
        assert (c.optimizer, c.momentum, c.scheduler, c.tau, c.loss_lambda, c.seed) == (
            "sgd", 0.9, "cosine", 1.1, 0.05, 1234)
    for path in CONFIGS.glob("*.yaml"):  # every shipped config loads
        TrainConfig.from_yaml(path)


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: digits\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'learning_rate'"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="unknown key 'batchsize'; did you mean 'batch_size'"):
        TrainConfig.from_yaml(CONFIGS / "digits-cpu.yaml", batchsize=3)
    path.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="lr must be float, got lr='fast'"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adamw"):
        TrainConfig(optimizer="adam")


def test_flags_override_the_config_file(tmp_path):
    from ilif.cli import build_parser

    path = tmp_path / "c.yaml"
    path.write_text("dataset: digits\nlr: 1e-3\nepochs: 7\nneuron_kwargs: {ciu_gain: 0.1}\n")
    args = build_parser().parse_args(
        ["train", "--config", str(path), "--epochs", "3", "--no-amp", "--T", "5",
         "--neuron-kwarg", "mpiu_gain=0.5"])
    config = resolve_config(args)
    assert config.lr == 0.001  # YAML reads 1e-3 as text: converted
    assert (config.epochs, config.amp, config.T) == (3, False, 5)
    assert config.neuron_kwargs == {"ciu_gain": 0.1, "mpiu_gain": 0.5}
    assert config.batch_size == TrainConfig().batch_size  # neither file nor flag: the default


# ------------------------------------------------------------------------------------ one run
class Recorder:
    """A callback with every hook; adds its own keys to the metrics and the summary."""

    def __init__(self):
        self.calls = []

    def on_train_start(self, model, config):
        self.calls.append(("start", type(model).__name__, config.epochs))

    def on_after_backward(self, model, batch_idx):
        grads = [p.grad for p in model.parameters()]
        self.calls.append(("backward", batch_idx, all(g is not None for g in grads)))

    def on_epoch_end(self, epoch, metrics):
        self.calls.append(("epoch", epoch, "test_accuracy" in metrics))
        metrics["custom"] = epoch * 10

    def on_train_end(self, model, summary):
        self.calls.append(("end", summary["epochs"]))
        summary["custom_summary"] = "yes"


class OnlyEpochEnd:
    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append(epoch)


def test_a_run_writes_every_file_and_calls_the_callbacks(tmp_path):
    out = tmp_path / "run"
    recorder, partial = Recorder(), OnlyEpochEnd()
    config = TrainConfig(**FAST, epochs=2, out=str(out))
    summary = run_training(config, callbacks=[recorder, partial])
    for name in ("config.yaml", "metrics.jsonl", "checkpoint_last.pt", "checkpoint_best.pt",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "config.yaml").read_text())["T"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["custom"] for r in rows] == [10, 20]
    for row in rows:
        assert row["train_samples"] == 3 * 32
        assert row["val_samples"] == 64 and row["test_samples"] == 64  # 2 batches of 32
        assert 0 < row["firing_rate"] < 1 and set(row["layer_firing_rate"]) == {
            "features.0.neuron", "features.1.neuron"}
        assert 0 <= row["test_accuracy"] <= 1
    assert rows[0]["lr"] == 0.1 and rows[1]["lr"] == pytest.approx(0.05)
    written = json.loads((out / "summary.json").read_text())
    assert written["custom_summary"] == "yes" == summary["custom_summary"]
    best = max(rows, key=lambda r: r["val_accuracy"])  # first maximum
    assert written["best_epoch"] == best["epoch"]
    assert written["test_accuracy_at_best"] == best["test_accuracy"]
    assert written["paper_protocol_max_test_accuracy"] == max(r["test_accuracy"] for r in rows)
    assert written["parameters"] == 9978 and written["T"] == 2
    assert recorder.calls[0] == ("start", "SpikingConvNet", 2)
    backward = [c for c in recorder.calls if c[0] == "backward"]
    assert [c[1] for c in backward] == [0, 1, 2, 0, 1, 2] and all(c[2] for c in backward)
    assert [c for c in recorder.calls if c[0] in ("epoch", "end")] == [
        ("epoch", 1, True), ("epoch", 2, True), ("end", 2)]
    assert partial.epochs == [1, 2]

    # the best checkpoint reloads into the same model: evaluating it reproduces the logged value
    model, config, state = load_checkpoint(out / "checkpoint_best.pt")
    assert config.model == "digits-small" and state["epoch"] == best["epoch"]
    from ilif.train.data import build_data, eval_loader
    from ilif.train.distributed import DistContext

    loader = eval_loader(build_data(config).test, 32, 0, DistContext(), False)
    result = evaluate(model, loader, limit_batches=2)
    assert result["accuracy"] == best["test_accuracy"]

    # the run directory is not overwritten by a new run
    with pytest.raises(CheckpointError, match="already holds a run.*--resume"):
        run_training(TrainConfig(**FAST, epochs=1, out=str(out)))


def test_validation_comes_from_the_unaugmented_training_set():
    from ilif.train.data import build_data

    config = TrainConfig(**FAST, augment=True)
    run_data = build_data(config)
    train, val = run_data.train, run_data.val
    assert len(val) == round(0.1 * 1437) and len(train) + len(val) == 1437
    assert not set(train.indices) & set(val.indices)
    torch.manual_seed(0)
    assert torch.equal(val[0][0], val[0][0])  # un-augmented: the same tensor each time
    draws = [train[0][0] for _ in range(12)]  # augmented: random crops differ
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_train_size_keeps_a_seeded_random_subset():
    from ilif.train.data import build_data

    base = {**FAST, "val_split": 0.0}
    full = build_data(TrainConfig(**base)).train
    kept = build_data(TrainConfig(**base, train_size=100)).train
    again = build_data(TrainConfig(**base, train_size=100)).train
    other = build_data(TrainConfig(**base, train_size=100, seed=7)).train
    assert len(kept) == 100 and kept.indices == again.indices  # seeded
    assert kept.indices != list(range(100)) and kept.indices != other.indices  # drawn, not the head
    assert kept.indices == sorted(kept.indices) and max(kept.indices) < len(full)


class PoisonWeights:
    """Sets the readout's bias to NaN after the first backward of epoch 2 (NaN in an earlier
    layer would be filtered out by the spikes: Θ(NaN) = 0)."""

    def __init__(self):
        self.epoch = 1

    def on_epoch_end(self, epoch, metrics):
        self.epoch = epoch + 1

    def on_after_backward(self, model, batch_idx):
        if self.epoch == 2 and batch_idx == 0:
            with torch.no_grad():
                list(model.parameters())[-1].fill_(float("nan"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 2, batch 2.*kept"):
        run_training(TrainConfig(**FAST, epochs=3, out=str(out)), callbacks=[PoisonWeights()])
    model, _, state = load_checkpoint(out / "checkpoint_last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (out / "summary.json").exists()


def test_a_changed_rate_takes_effect_on_resume(tmp_path):
    out = tmp_path / "run"
    base = {**FAST, "scheduler": "constant", "out": str(out)}
    run_training(TrainConfig(**base, epochs=1, lr=0.1, weight_decay=1e-3))
    run_training(TrainConfig(**base, epochs=2, lr=0.02, weight_decay=0.0,
                             resume=str(out / "checkpoint_last.pt")))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [pytest.approx(0.1), pytest.approx(0.02)]
    _, _, state = load_checkpoint(out / "checkpoint_last.pt")
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 0.0


def test_bad_checkpoints_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    run_training(TrainConfig(**FAST, epochs=1, out=str(out)))
    last = out / "checkpoint_last.pt"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(last.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="broken.pt is not a readable checkpoint"):
        load_checkpoint(broken)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an ilif training checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="model='digits-small', not model='cifar-small'"):
        run_training(TrainConfig(**{**FAST, "model": "cifar-small"}, epochs=2, resume=str(last),
                                 out=str(out)))
    # the command line says it in one line and exits with status 2
    assert ilif_main(["train", "--resume", str(broken)]) == 2
    assert "broken.pt is not a readable checkpoint" in capsys.readouterr().err


def test_command_line_errors_list_the_valid_names(capsys, tmp_path):
    assert ilif_main(["train", "--model", "resnet50", "--out", str(tmp_path / "a")]) == 2
    assert "unknown model 'resnet50'; valid names: resnet18" in capsys.readouterr().err
    assert ilif_main(["train", "--dataset", "mnist", "--out", str(tmp_path / "b")]) == 2
    assert "unknown dataset 'mnist'; valid names: digits" in capsys.readouterr().err
    assert ilif_main(["train", "--surrogate", "erf", "--out", str(tmp_path / "c")]) == 2
    assert "unknown surrogate 'erf'" in capsys.readouterr().err


def test_eval_command_writes_its_result(tmp_path, capsys):
    out = tmp_path / "run"
    assert ilif_main(["train", "--dataset", "digits", "--T", "2", "--epochs", "1",
                      "--limit-train-batches", "2", "--batch-size", "32", "--quiet",
                      "--out", str(out)]) == 0
    assert ilif_main(["eval", str(out / "checkpoint_last.pt"), "--quiet",
                      "--out", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert result["count"] == 360 and result["accuracy"] == row["test_accuracy"]
    assert result["firing_rate"] == pytest.approx(row["test_firing_rate"])
    assert result["precision"] == "float32"
    # --amp: the same checkpoint under bf16 autocast (rounding moves the loss, not the rates much)
    assert ilif_main(["eval", str(out / "checkpoint_last.pt"), "--quiet", "--amp",
                      "--out", str(tmp_path / "e16.json")]) == 0
    half = json.loads((tmp_path / "e16.json").read_text())
    assert half["precision"] == "bfloat16" and half["count"] == 360
    assert half["loss"] != result["loss"]
    assert abs(half["firing_rate"] - result["firing_rate"]) < 0.02
    assert "open rate" in capsys.readouterr().out


def test_event_data_adamw_clipping_and_no_validation_split(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(
        dataset="digits-dvs", model="digits-small", T=4, epochs=1, batch_size=16,
        limit_train_batches=2, limit_eval_batches=1, val_split=0.0, optimizer="adamw", lr=1e-3,
        grad_clip=0.5, loss_target="onehot", dropout=0.2, quiet=True, out=str(out),
    )
    summary = run_training(config)
    assert summary["T"] == 4 and summary["best_selected_by"] == "test_accuracy"
    assert summary["best_val_accuracy"] is None
    row = json.loads((out / "metrics.jsonl").read_text())
    assert "val_accuracy" not in row and row["test_samples"] == 16
    _, _, state = load_checkpoint(out / "checkpoint_last.pt")
    assert "exp_avg" in next(iter(state["optimizer"]["state"].values()))  # AdamW's moments
    assert state["model_args"]["in_channels"] == 2 and state["model_args"]["dropout"] == 0.2


def test_bf16_shift_benchmark_pairs_float32_and_bf16_evaluations(tmp_path):
    out = tmp_path / "run"
    assert ilif_main(["train", "--dataset", "digits", "--T", "2", "--epochs", "1",
                      "--limit-train-batches", "2", "--batch-size", "32", "--quiet",
                      "--out", str(out)]) == 0
    ckpt = out / "checkpoint_last.pt"
    assert ilif_main(["eval", str(ckpt), "--quiet", "--out", str(tmp_path / "f32.json")]) == 0
    assert ilif_main(["eval", str(ckpt), "--quiet", "--amp",
                      "--out", str(tmp_path / "b16.json")]) == 0
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bf16_shift.py"
    result = subprocess.run([sys.executable, str(script), str(ckpt), str(ckpt),
                             "--out", str(tmp_path / "shift.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shift = json.loads((tmp_path / "shift.json").read_text())
    f32 = json.loads((tmp_path / "f32.json").read_text())
    b16 = json.loads((tmp_path / "b16.json").read_text())
    run = shift["runs"][0]
    for q in ("firing_rate", "open_rate", "accuracy"):
        # the same numbers as `ilif eval` without and with --amp, and their paired difference
        assert run["float32"][q] == pytest.approx(f32[q], abs=1e-12)
        assert run["bfloat16"][q] == pytest.approx(b16[q], abs=1e-12)
        assert shift["summary"][q]["mean_delta"] == pytest.approx(b16[q] - f32[q], abs=1e-12)
        assert shift["summary"][q]["n"] == 2


def test_amp_accuracy_benchmark_pairs_runs_by_seed_and_resumes(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("dataset: digits\nmodel: digits-small\nT: 2\nepochs: 1\nbatch_size: 32\n"
                      "limit_train_batches: 2\nlimit_eval_batches: 2\nquiet: true\n")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "amp_accuracy.py"
    command = [sys.executable, str(script), "--config", str(config), "--seeds", "1,2",
               "--root", str(tmp_path / "runs"), "--threads", "1",
               "--data-root", str(tmp_path), "--out", str(tmp_path / "amp.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "4 runs to train" in result.stderr
    report = json.loads((tmp_path / "amp.json").read_text())
    runs = {(arm, seed): json.loads((tmp_path / "runs" / f"{arm}-s{seed}" / "summary.json")
                                    .read_text()) for arm in ("float32", "amp") for seed in (1, 2)}
    for seed in (1, 2):
        assert runs[("float32", seed)]["seed"] == runs[("amp", seed)]["seed"] == seed
        assert runs[("float32", seed)]["config"]["amp"] is False
        assert runs[("amp", seed)]["config"]["amp"] is True
    deltas = [runs[("amp", s)]["final_test_accuracy"] - runs[("float32", s)]["final_test_accuracy"]
              for s in (1, 2)]
    summary = report["summary"]["final_test_accuracy"]
    assert summary["n"] == 2 and report["seeds"] == [1, 2]
    assert summary["mean_delta"] == pytest.approx(sum(deltas) / 2, abs=1e-12)
    # a t-interval on 1 degree of freedom: d̄ ± 12.706 · |d1 − d2| / 2
    half = 12.7062047 * abs(deltas[0] - deltas[1]) / 2
    assert summary["ci95"] == pytest.approx([sum(deltas) / 2 - half, sum(deltas) / 2 + half],
                                            abs=1e-6)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 runs to train" in again.stderr
