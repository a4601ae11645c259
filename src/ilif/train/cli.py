"""``ilif train`` and ``ilif eval``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from ilif.train.config import TrainConfig

# Errors that are the user's to fix: shown as one message, without a traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types a command reports as one line (bad input the user can fix)."""
    from ilif.train.checkpoint import CheckpointError
    from ilif.train.loop import NonFiniteLossError

    return (*_USER_ERRORS, CheckpointError, NonFiniteLossError)


def add_import_flag(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): modules imported first, e.g. one registering a neuron."""
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import this module (dotted name or .py file) first, e.g. one that registers a "
        "neuron with @ilif.register_neuron; repeatable",
    )


def import_requested(args: argparse.Namespace) -> None:
    """Import the modules of ``--import`` (their neurons are then available by name)."""
    from ilif.neurons import import_modules

    import_modules(getattr(args, "imports", []) or [])


def _neuron_help(default: str) -> str:
    from ilif.neurons import neuron_names

    return (f"neuron: {', '.join(neuron_names())}, or one registered by an --import module "
            f"(default: {default})")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``batch_size`` -> ``--batch-size``); a flag left
    out keeps the config file's (or the default) value."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else "{}"
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if f.name == "neuron":
            help_text = _neuron_help(default)
        if f.name == "neuron_kwargs":
            parser.add_argument(
                "--neuron-kwarg", dest="neuron_kwargs", action="append", metavar="KEY=VALUE",
                default=argparse.SUPPRESS,
                help="an extra neuron argument (repeatable), e.g. --neuron-kwarg ciu_gain=0.05",
            )
        elif hints[f.name] is bool or set(typing.get_args(hints[f.name])) == {bool, type(None)}:
            action = "store_true" if f.name == "quiet" else argparse.BooleanOptionalAction
            parser.add_argument(_flag(f.name), action=action, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(_flag(f.name), default=argparse.SUPPRESS, help=help_text,
                                metavar=f.name.upper() if f.name != "T" else "T")


def _parse_neuron_kwargs(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--neuron-kwarg expects KEY=VALUE, got {item!r}")
        values[key.strip()] = yaml.safe_load(raw)
    return values


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- the checkpoint's config (``--resume``) <- ``--config`` file <- flags."""
    from ilif.train.checkpoint import read_checkpoint

    values: dict[str, Any] = {}
    resume = getattr(args, "resume", None)
    if resume:
        values.update(read_checkpoint(resume)["config"])
        values["out"] = str(Path(resume).parent)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"--config: file not found: {path}")
        values.update(yaml.safe_load(path.read_text()) or {})
        TrainConfig.from_dict(values, source=str(path))  # names the file in key errors
    for name in TrainConfig.field_names():
        if name in vars(args):
            value = getattr(args, name)
            if name == "neuron_kwargs":
                value = {**values.get("neuron_kwargs", {}), **_parse_neuron_kwargs(value)}
            values[name] = value
    return TrainConfig.from_dict(values, source="flags")


def one_line(err: BaseException) -> str:
    """The message of ``err``; for an error re-raised from a DataLoader worker (whose message
    embeds the worker's traceback) the original error's own message, the last line."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    name, sep, message = last.partition(": ")
    return message if sep and name.split(".")[-1] == type(err).__name__ else last


def train_command(args: argparse.Namespace, callbacks: tuple[Any, ...] = ()) -> int:
    """``ilif train``: the run of the parsed ``args`` (``callbacks`` as in ``run_training``)."""
    from ilif.train.distributed import is_rank_zero, log
    from ilif.train.runner import run_training

    try:
        import_requested(args)
        config = resolve_config(args)
        summary = run_training(config, callbacks)
    except user_errors() as err:
        log(f"ilif train: error: {one_line(err)}", every_rank=True, file=sys.stderr)
        return 2
    if is_rank_zero():
        best = summary["test_accuracy_at_best"]
        peak = summary["paper_protocol_max_test_accuracy"]
        if best is not None:
            print(
                f"done: test accuracy {100 * best:.2f}% at the best epoch "
                f"({summary['best_epoch']}, by {summary['best_selected_by']}); "
                f"max test accuracy over epochs (the paper's protocol) {100 * peak:.2f}%; "
                f"files in {summary['run_dir']}"
            )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ilif.files import write_json
    from ilif.monitors import SpikeMonitor
    from ilif.train.checkpoint import load_checkpoint
    from ilif.train.data import build_data, eval_loader
    from ilif.train.distributed import DistContext, resolve_device
    from ilif.train.loop import evaluate
    from ilif.train.loss import SpikingLoss
    from ilif.train.precision import autocast_dtype

    try:
        import_requested(args)
        device = resolve_device(args.device)
        amp = autocast_dtype(device, args.amp, args.amp_dtype)
        model, config, state = load_checkpoint(args.checkpoint, device)
        changes = {"dataset": args.dataset, "data_root": args.data_root}
        config = config.replace(**{k: v for k, v in changes.items() if v is not None},
                                T=state["model_args"]["T"])
        run_data = build_data(config)
        part = {"test": run_data.test, "val": run_data.val, "train": run_data.train}[args.split]
        if part is None:
            raise ValueError("--split val: this run has no validation split (val_split = 0)")
        loader = eval_loader(part, args.batch_size or config.batch_size, args.workers,
                             DistContext(), device.type == "cuda")
        loss_fn = SpikingLoss.from_config(config)
        with SpikeMonitor(model) as monitor:
            result = evaluate(model, loader, device, loss_fn=loss_fn, amp=amp,
                              limit_batches=args.limit_eval_batches, monitor=monitor,
                              progress=not args.quiet, desc=args.split)
    except user_errors() as err:
        print(f"ilif eval: error: {one_line(err)}", file=sys.stderr)
        return 2
    result.update(checkpoint=str(args.checkpoint), epoch=state["epoch"], split=args.split,
                  dataset=config.dataset, model=config.model, neuron=config.neuron,
                  precision=str(amp).removeprefix("torch.") if amp else "float32")
    out = args.out or str(Path(args.checkpoint).with_name(
        f"eval_{Path(args.checkpoint).stem}_{config.dataset}_{args.split}.json"))
    write_json(out, result)
    print(f"{config.model}/{config.neuron} on {config.dataset} {args.split}: accuracy "
          f"{100 * result['accuracy']:.2f}% ({result['correct']}/{result['count']}), loss "
          f"{result['loss']:.4f}, firing rate {result['firing_rate']:.4f}, open rate "
          f"{result['open_rate']:.4f} ({result['precision']}); written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``eval`` to the ``ilif`` command line."""
    train = subparsers.add_parser(
        "train", help="train a spiking model (flags override --config)",
        description="Train a spiking model. Every flag is also a key of the YAML --config file "
        "(flag name with underscores); flags override the file. Writes config.yaml, "
        "metrics.jsonl, tensorboard/, checkpoint_last.pt, checkpoint_best.pt and summary.json "
        "to --out. Multi-process: torchrun --nproc_per_node=N -m ilif train ...",
    )
    train.add_argument("--config", help="YAML file of TrainConfig keys")
    add_import_flag(train)
    add_config_flags(train)
    train.set_defaults(func=train_command)

    evaluate = subparsers.add_parser(
        "eval", help="evaluate a checkpoint",
        description="Accuracy, loss and firing rates of a checkpoint on a dataset split; the "
        "result is printed and written as JSON.",
    )
    evaluate.add_argument("checkpoint", help="a checkpoint_*.pt written by ilif train")
    evaluate.add_argument("--dataset", help="dataset (default: the run's)")
    evaluate.add_argument("--data-root", help="dataset folder (default: the run's)")
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test")
    evaluate.add_argument("--batch-size", type=int, default=None)
    evaluate.add_argument("--limit-eval-batches", type=int, default=None)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--workers", type=int, default=0)
    evaluate.add_argument("--out", help="JSON file for the result (default: beside the checkpoint)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None,
        help="autocast: bfloat16 on the CPU, float16 on CUDA (default: float32 on the CPU, "
        "float16 on CUDA), as ilif train --amp",
    )
    evaluate.add_argument("--amp-dtype", choices=("auto", "fp16", "bf16"), default="auto",
                          help="the autocast type with --amp (fp16 is CUDA only)")
    add_import_flag(evaluate)
    evaluate.set_defaults(func=_eval)
