"""``python -m ilif.study``: run the study's sweeps (resumable) and write docs/results.md.

    python -m ilif.study                   # every sweep, then the document (make results)
    python -m ilif.study --jobs 2          # two sweeps at a time, one CPU thread each
    python -m ilif.study --jobs 2 --hours 3   # a piece: no sweep starts after 3 hours
    python -m ilif.study --parts primary-sgd --seeds 1,2,3
    python -m ilif.study --estimate        # the plan's CPU-hours, from the pilot
    python -m ilif.study --write-only      # the document from docs/results-data alone
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from pathlib import Path

from ilif.study.load import DATA, export
from ilif.study.plan import (
    BUDGET_CPU_HOURS,
    DEFAULT_ROOT,
    NMNIST_DATA,
    PARTS,
    estimate,
    missing_data,
    nmnist_tree,
    run_jobs,
    study_jobs,
)
from ilif.study.write import DOC, FIGURES, write_results_doc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ilif.study",
        description="Run the sweeps of the study (finished cells are skipped, interrupted ones "
        "resume) and write docs/results.md with its figures from the collected results.",
    )
    parser.add_argument("--root", default=str(DEFAULT_ROOT),
                        help=f"where the sweeps go (default {DEFAULT_ROOT})")
    parser.add_argument("--doc", default=str(DOC), help=f"the document (default {DOC})")
    parser.add_argument("--data", default=str(DATA),
                        help=f"the per-run summaries the page is built from (default {DATA})")
    parser.add_argument("--figures", default=str(FIGURES),
                        help=f"the figures folder (default {FIGURES})")
    parser.add_argument("--shared-data", default="../shared/data",
                        help="the real data folder (default ../shared/data)")
    parser.add_argument("--parts", help=f"comma-separated parts to run: {', '.join(PARTS)}")
    parser.add_argument("--seeds", help="comma-separated seeds to run (default: each part's)")
    parser.add_argument("--jobs", type=int, default=1, help="sweeps at a time (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per sweep (default 1)")
    parser.add_argument("--hours", type=float, default=None,
                        help="start no sweep after this many hours (run the study in pieces)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the plan's estimated CPU-hours per part and exit")
    parser.add_argument("--write-only", action="store_true",
                        help="run nothing: write the document from the summaries in --data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root, shared = Path(args.root), Path(args.shared_data)
    if args.jobs < 1 or args.threads < 1:
        print("error: --jobs and --threads must be >= 1", file=sys.stderr)
        return 2
    codes: dict[str, int] = {}
    if args.estimate:
        rows = estimate()
        for name, cells, seeds, hours in rows:
            print(f"{name:16s} {cells:3d} cells × {seeds} seeds  {hours:6.2f} CPU-hours")
        total = sum(h for *_, h in rows)
        print(f"{'total':16s} {total:28.2f} CPU-hours (budget {BUDGET_CPU_HOURS:g})")
        return 0
    if not args.write_only:
        parts = [p.strip() for p in args.parts.split(",")] if args.parts else None
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        try:
            jobs = study_jobs(parts, seeds)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        runnable = []
        for job in jobs:
            reason = missing_data(job.part, shared)
            if reason:
                print(f"{job.name}: skipped, real data missing ({reason})")
                continue
            # the sweeps read the data from here, whatever the configs say
            if job.part.needs == NMNIST_DATA:  # linked into the standard N-MNIST tree
                data_root = nmnist_tree(shared, root / "nmnist-data")
            else:
                data_root = shared if job.part.needs else None  # None: data built in
            runnable.append(dataclasses.replace(job, data_root=data_root))
        print(f"study: {len(runnable)} sweeps into {root} ({args.jobs} at a time); the "
              "summaries and the document are rewritten after each", flush=True)

        def done(job, code):  # noqa: ANN001 - the runner's callback
            try:
                export(root, args.data)
                path = write_results_doc(args.data, args.doc, args.figures, root)
            except Exception:  # the sweeps go on; the document is written again at the end
                traceback.print_exc()
                return
            print(f"  {path} rewritten", flush=True)

        codes = run_jobs(runnable, root, args.jobs, args.threads, done,
                         say=lambda line: print(line, flush=True), hours=args.hours)
        export(root, args.data)
    path = write_results_doc(args.data, args.doc, args.figures, root)
    print(f"study: wrote {path} (figures in {args.figures})")
    bad = [name for name, code in codes.items() if code != 0]
    if bad:
        print(f"sweeps with failed cells: {', '.join(bad)} (see {root}/logs and the cells' "
              "error.txt); rerun to retry them")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
