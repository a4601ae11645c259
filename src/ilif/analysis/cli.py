"""The ``ilif sweep``, ``ilif report`` and ``ilif demo`` subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ilif.analysis.energy import EnergyConstants


def _add_energy_flags(parser: argparse.ArgumentParser) -> None:
    from ilif.analysis.energy import ENERGY_PRESETS, EnergyConstants

    default = EnergyConstants()
    group = parser.add_argument_group("energy model (docs/neurons.md, docs/analysis.md)")
    group.add_argument("--energy-preset", default="45nm", choices=list(ENERGY_PRESETS),
                       help="per-operation energies: 45nm (Horowitz 2014, the default) or loihi "
                       "(Davies et al. 2018); the flags below change single values of it")
    group.add_argument("--mac-pj", type=float, default=None,
                       help=f"energy of a MAC (pJ, 45nm: {default.mac_pj})")
    group.add_argument("--ac-pj", type=float, default=None,
                       help=f"energy of an accumulate / synaptic op (pJ, 45nm: {default.ac_pj})")
    group.add_argument("--sigmoid-macs", type=float, default=None,
                       help=f"cost of one sigmoid in MACs (45nm: {default.sigmoid_macs:g})")
    group.add_argument("--state-access-pj", type=float, default=None,
                       help="count state memory traffic at this energy per access (pJ)")
    group.add_argument("--encoding-once", action="store_true",
                       help="count the encoding layer once per inference instead of T times")


def _constants(args: argparse.Namespace) -> EnergyConstants:
    from ilif.analysis.energy import energy_preset

    changes = {key: getattr(args, key) for key in ("mac_pj", "ac_pj", "sigmoid_macs",
                                                   "state_access_pj")
               if getattr(args, key, None) is not None}
    if getattr(args, "encoding_once", False):
        changes["encoding_once"] = True
    return energy_preset(getattr(args, "energy_preset", "45nm"), **changes)


def _sweep(args: argparse.Namespace) -> int:
    from ilif.analysis.sweep import failed, make_grid, parse_list, run_sweep
    from ilif.train.cli import import_requested, resolve_config, user_errors

    try:
        import_requested(args)
        base = resolve_config(args)
        variants = parse_list(args.variants, name="--variants")
        if variants:
            variants = ["" if v in ("none", "full") else v for v in variants]
        grid = make_grid(base, args.preset, parse_list(args.neurons, name="--neurons"),
                         parse_list(args.surrogates, name="--surrogates"),
                         parse_list(args.widths, float, "--widths"),
                         parse_list(args.seeds, int, "--seeds"), variants)
        grid.cells()  # checks the variants
    except user_errors() as err:
        print(f"ilif sweep: error: {err}", file=sys.stderr)
        return 2
    rows = run_sweep(base, grid, args.out, _constants(args), args.analysis_batches,
                     trajectories=args.trajectories)
    if not args.no_report:
        from ilif.analysis.report import ReportError, write_report

        try:
            print(f"report: {write_report(args.out)}")
        except ReportError as err:
            print(f"no report: {err}")
    bad = failed(rows)
    if bad:
        print(f"{len(bad)} cell(s) failed: {', '.join(bad)} (see error.txt in their directories)")
    return 1 if bad else 0


def _report(args: argparse.Namespace) -> int:
    from ilif.analysis.report import ReportError, load_results, summary_table, write_report

    try:
        path = write_report(args.run_dir)
    except ReportError as err:
        print(f"error: {err}")
        return 2
    print(summary_table(load_results(args.run_dir)[0]))
    print(f"report: {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ilif.analysis.demo import DEMO_WIDTHS, run_demo
    from ilif.analysis.sweep import Grid, parse_list

    overrides = {
        "epochs": args.epochs, "train_size": args.train_size,
        "limit_train_batches": args.limit_train_batches,
        "limit_eval_batches": args.limit_eval_batches,
    }
    try:
        widths = parse_list(args.widths, float, "--widths") or list(DEMO_WIDTHS)
        Grid(neurons=["lif"], surrogates=["rectangle"], widths=widths, seeds=[1]).cells()
    except ValueError as err:
        print(f"ilif demo: error: {err}", file=sys.stderr)
        return 2
    run_demo(args.out, widths=widths, **overrides)
    return 0


def register(subparsers: Any) -> None:
    """Add ``sweep``, ``report`` and ``demo`` to the ``ilif`` command line."""
    from ilif.train.cli import add_config_flags, add_import_flag

    sweep = subparsers.add_parser(
        "sweep", help="train a grid of neurons × surrogates × widths × seeds (resumable)",
        conflict_handler="resolve",  # --out, --config: the sweep's own, added after the config's
        description="Train one run per cell of neurons × surrogates × widths × seeds, measuring "
        "firing, gradient-open rate, gradient norms and energy; finished cells are skipped and "
        "an interrupted cell resumes from its last checkpoint. Writes OUT/results.csv, "
        "OUT/results.json and OUT/report.md. Every `ilif train` flag applies to every cell "
        "(--neuron, --surrogate, --width, --seed: a one-value axis).",
    )
    add_config_flags(sweep.add_argument_group("training (every `ilif train` setting)"))
    sweep.add_argument("--out", required=True, help="sweep directory (cells go to OUT/cells/)")
    sweep.add_argument("--config", help="a training YAML config for every cell")
    add_import_flag(sweep)
    sweep.add_argument("--preset", choices=["width", "ablation", "surrogate", "neurons",
                                            "gradient-paths"],
                       help="a predefined grid (the axes given below replace its own)")
    sweep.add_argument("--neurons", help="comma-separated neuron names, e.g. lif,ilif (any "
                       "registered name)")
    sweep.add_argument("--surrogates", help="comma-separated surrogates, e.g. rectangle,atan")
    sweep.add_argument("--widths", help="comma-separated surrogate widths γ, e.g. 0.5,1,2")
    sweep.add_argument("--seeds", help="comma-separated seeds, e.g. 1,2,3")
    sweep.add_argument("--variants", help="gradient-path variants: full,detach-reset,"
                                          "detach-inhibition")
    sweep.add_argument("--analysis-batches", type=int, default=None,
                       help="test batches of the final analysis pass (default: the eval limit)")
    sweep.add_argument("--no-report", action="store_true", help="skip report.md")
    sweep.add_argument("--trajectories", action="store_true",
                       help="also measure every cell's step-0 baseline (512 validation images, "
                       "batch norm in training mode) and per-epoch validation rates and weight "
                       "updates (docs/analysis.md)")
    _add_energy_flags(sweep)
    sweep.set_defaults(func=_sweep)

    report = subparsers.add_parser(
        "report", help="write report.md and figures for a sweep directory",
        description="Read RUN_DIR/results.json (from `ilif sweep` or `ilif demo`) and write "
        "RUN_DIR/report.md with PNG figures in RUN_DIR/figures.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(func=_report)

    demo = subparsers.add_parser(
        "demo", help="LIF vs ILIF on embedded digits over a γ sweep, with the report",
        description="Train LIF and ILIF on the embedded 8×8 digits at a few surrogate widths, "
        "print accuracy, firing rate, gradient-open rate and energy, and write the report.",
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--widths", help="comma-separated widths γ (default 0.25,1,4)")
    demo.add_argument("--epochs", type=int, default=None, help="epochs per run (default 3)")
    demo.add_argument("--train-size", type=int, default=None,
                      help="training samples per run (default 640)")
    demo.add_argument("--limit-train-batches", type=int, default=None)
    demo.add_argument("--limit-eval-batches", type=int, default=None)
    demo.set_defaults(func=_demo)
