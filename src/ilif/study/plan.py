"""The sweeps of the study and the runner that carries them out (resumably, in parallel).

Each :class:`Part` is one ``ilif sweep`` grid over a training config of ``configs/study/``; it runs
once per seed into ``ROOT/<part>/s<seed>`` (so every seed of every part is a separate, resumable
sweep, and a study cut short still holds whole seeds). The design (docs/results.md, "Primary
endpoints"): the two primary arms (SGD, the paper's recipe, and AdamW, whose steps do not scale
with the surrogate's height 1/γ) train LIF and ILIF at γ = 0.25, 1 and 4 on the whole CIFAR-10
subset for 6 epochs with the same seeds, so every endpoint is paired by seed; the other parts
are exploratory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("runs/study")
PRIMARY_SEEDS = (1, 2, 3, 4, 5, 6)
SEEDS = PRIMARY_SEEDS
PAPER_WIDTH = 1.0  # the paper's surrogate: rectangle of width γ = 1
NARROW, WIDE = 0.25, 4.0


@dataclass(frozen=True)
class Part:
    """One sweep of the study: a training config and a grid, run once per seed."""

    name: str
    config: str
    neurons: tuple[str, ...]
    widths: tuple[float, ...] = (PAPER_WIDTH,)
    surrogates: tuple[str, ...] = ("rectangle",)
    seeds: tuple[int, ...] = PRIMARY_SEEDS
    analysis_batches: int | None = None
    needs: str | None = None  # the real-data folder it reads, relative to the shared data
    variants: tuple[str, ...] = ()  # gradient-path variants (``ilif sweep --variants``)
    epochs: int | None = None  # instead of the config's
    trajectories: bool = True
    primary: bool = False

    def out(self, root: str | Path, seed: int) -> Path:
        """The sweep directory of one seed."""
        return Path(root) / self.name / f"s{seed}"

    def command(self, root: str | Path, seed: int, python: str = "python",
                data_root: str | Path | None = None) -> list[str]:
        """The ``ilif sweep`` command line of one seed of this part (``data_root``: the dataset
        folder, instead of the config's)."""
        args = [python, "-m", "ilif", "sweep", "--config", self.config,
                "--neurons", ",".join(self.neurons),
                "--surrogates", ",".join(self.surrogates),
                "--widths", ",".join(f"{w:g}" for w in self.widths),
                "--seeds", str(seed), "--out", str(self.out(root, seed)), "--no-report"]
        if self.variants:
            args += ["--variants", ",".join(self.variants)]
        if self.epochs is not None:
            args += ["--epochs", str(self.epochs)]
        if self.trajectories:
            args += ["--trajectories"]
        if self.analysis_batches is not None:
            args += ["--analysis-batches", str(self.analysis_batches)]
        if data_root is not None:
            args += ["--data-root", str(data_root)]
        return args

    def cells_per_seed(self) -> int:
        return (len(self.neurons) * len(self.widths) * len(self.surrogates)
                * max(len(self.variants), 1))

    def config_values(self) -> dict:
        """The training config (empty where the file is missing), with the part's epochs."""
        import yaml

        path = Path(self.config)
        values = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
        if self.epochs is not None:
            values["epochs"] = self.epochs
        return values


CIFAR = "configs/study/cifar10.yaml"
CIFAR_ADAMW = "configs/study/cifar10-adamw.yaml"
CIFAR_TAU = "configs/study/cifar10-tau2.yaml"
CIFAR_DATA = "cifar-10-batches-py"
NMNIST_DATA = "events/nmnist/NMNISTsmall"
PRIMARY_WIDTHS = (NARROW, PAPER_WIDTH, WIDE)


def _parts() -> tuple[Part, ...]:
    return (
        # the primary endpoints E1–E3, paired by seed: the paper's recipe ...
        Part("primary-sgd", CIFAR, ("lif", "ilif"), PRIMARY_WIDTHS, needs=CIFAR_DATA,
             primary=True),
        # ... and the scale-free control arm
        Part("primary-adamw", CIFAR_ADAMW, ("lif", "ilif"), PRIMARY_WIDTHS, needs=CIFAR_DATA,
             primary=True),
        # a longer membrane time constant (τ = 2, leak λ = 0.5): more temporal dynamics
        Part("tau2", CIFAR_TAU, ("lif", "ilif"), (PAPER_WIDTH,), seeds=(1, 2, 3),
             needs=CIFAR_DATA),
        # ILIF with its reset path, or its inhibitory paths, cut from the gradient, beside full
        # ILIF of the same length
        Part("gradient-paths", CIFAR, ("ilif",), (PAPER_WIDTH,), seeds=(1, 2),
             variants=("full", "detach-reset", "detach-inhibition"), epochs=3,
             needs=CIFAR_DATA),
        # the γ study on temporal event data, trained to a plateau
        Part("dvs-width", "configs/study/digits-dvs.yaml", ("lif", "ilif"), PRIMARY_WIDTHS,
             seeds=(1, 2, 3)),
        # the real N-MNIST recordings end to end (a pipeline check, no accuracy claim)
        Part("nmnist-smoke", "configs/study/nmnist-smoke.yaml", ("lif", "ilif"), seeds=(1,),
             needs=NMNIST_DATA, trajectories=False),
    )


PARTS: dict[str, Part] = {part.name: part for part in _parts()}

# The order the study runs in: the primary arms seed by seed (so a study cut short holds whole
# pairs), then the exploratory parts.
ORDER: tuple[tuple[str, int], ...] = (
    *((name, seed) for seed in PRIMARY_SEEDS for name in ("primary-sgd", "primary-adamw")),
    ("dvs-width", 1), ("dvs-width", 2), ("dvs-width", 3), ("nmnist-smoke", 1),
    ("tau2", 1), ("tau2", 2), ("tau2", 3),
    ("gradient-paths", 1), ("gradient-paths", 2),
)

# --------------------------------------------------------------------------------- the budget
# CPU seconds of one epoch of one cell, measured by a pilot on this machine (one CPU thread, the
# machine shared with other work; user + system time of the process):
#   /usr/bin/time -v python -m ilif train --config configs/study/cifar10.yaml --epochs 1 \
#       --neuron ilif --width 1 --seed 1 --out runs/pilot
# (the whole epoch: 140 SGD steps on 9,000 images, then the 1,000 validation and 2,000 test
# images); digits-dvs: the same command on configs/study/digits-dvs.yaml with --epochs 1 and
# --epochs 3 (the difference over 2 epochs: 1.7 s; the start-up about 7 s).
PILOT_EPOCH_CPU_S = {"cifar10": 72.0, "digits-dvs": 1.7, "nmnist": 1.0}
# per epoch: the trajectory's validation pass; per cell: start-up, the step-0 baseline and the
# final analysis pass over the test set
EPOCH_EXTRA_CPU_S = {"cifar10": 8.0, "digits-dvs": 1.0, "nmnist": 0.5}
CELL_EXTRA_CPU_S = {"cifar10": 30.0, "digits-dvs": 8.0, "nmnist": 8.0}
BUDGET_CPU_HOURS = 12.0


def job_cpu_seconds(part: Part) -> float:
    """The estimated CPU seconds of one seed of ``part`` (from the pilot's per-epoch cost)."""
    config = part.config_values()
    dataset = str(config.get("dataset", "cifar10"))
    epochs = int(config.get("epochs", 1))
    per_epoch = PILOT_EPOCH_CPU_S.get(dataset, PILOT_EPOCH_CPU_S["cifar10"]) + \
        EPOCH_EXTRA_CPU_S.get(dataset, 0.0)
    return part.cells_per_seed() * (epochs * per_epoch + CELL_EXTRA_CPU_S.get(dataset, 0.0))


def estimate(parts: Sequence[Part] | None = None) -> list[tuple[str, int, int, float]]:
    """(part, cells per seed, seeds, CPU hours) of every part, from :func:`job_cpu_seconds`."""
    return [(p.name, p.cells_per_seed(), len(p.seeds), job_cpu_seconds(p) * len(p.seeds) / 3600)
            for p in (parts or PARTS.values())]


def sgd_steps(part: Part) -> int | None:
    """SGD steps of one run of ``part`` (None where the training split size is not known
    here): ⌊training samples / batch⌋ per epoch (the last partial batch is dropped; or the batch
    limit) × epochs."""
    config = part.config_values()
    sizes = {"cifar10": 10000, "digits-dvs": 1437, "nmnist": 10}
    total = sizes.get(str(config.get("dataset")))
    if total is None:
        return None
    train = int(total * (1.0 - float(config.get("val_split", 0.1))))
    if config.get("train_size"):
        train = min(train, int(config["train_size"]))
    batch = int(config.get("batch_size", 64))
    per_epoch = train // batch if train > batch else 1  # a single batch is kept whole
    if config.get("limit_train_batches"):
        per_epoch = min(per_epoch, int(config["limit_train_batches"]))
    return per_epoch * int(config.get("epochs", 1))


@dataclass(frozen=True)
class Job:
    part: Part
    seed: int
    data_root: Path | None = None  # the dataset folder of its sweeps (None: the config's)

    @property
    def name(self) -> str:
        return f"{self.part.name} s{self.seed}"


def study_jobs(parts: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> list[Job]:
    """The study's sweeps in run order, restricted to ``parts`` where given. ``seeds`` replaces
    the parts' own seeds (seeds beyond the plan's add pairs to an endpoint)."""
    for name in parts or ():
        if name not in PARTS:
            raise ValueError(f"unknown study part {name!r}; valid parts: {', '.join(PARTS)}")
    if seeds:
        return [Job(part, seed) for seed in seeds for part in PARTS.values()
                if not parts or part.name in parts]
    # every seed of every part, those of ORDER first in its order
    order = [*ORDER, *((p.name, s) for p in PARTS.values() for s in p.seeds
                       if (p.name, s) not in ORDER)]
    return [Job(PARTS[name], seed) for name, seed in order
            if (not parts or name in parts) and seed in PARTS[name].seeds]


# ------------------------------------------------------------------------------------ real data
def nmnist_tree(shared: Path, dest: Path) -> Path:
    """Link the real N-MNIST recordings of ``shared/events/nmnist/NMNISTsmall`` (``<id>.bs2``,
    labels in ``train1K.txt`` / ``test100.txt``) into the standard ``Train|Test/<digit>/<n>.bin``
    tree under ``dest`` (ids above 60,000 are test samples, numbered from 1). Links, no copies."""
    folder = shared / NMNIST_DATA
    labels: dict[int, int] = {}
    for name in ("train1K.txt", "test100.txt"):
        lines = (folder / name).read_text().splitlines()[1:]  # a header line, then "<id> <label>"
        labels.update({int(a): int(b) for a, b in (line.split() for line in lines if line.strip())})
    for path in sorted(folder.glob("*.bs2")):
        sample = int(path.stem)
        split, number = ("Train", sample) if sample <= 60000 else ("Test", sample - 60000)
        target = dest / split / str(labels[sample]) / f"{number:05d}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_symlink():
            target.symlink_to(path.resolve())
    return dest


def missing_data(part: Part, shared: Path) -> str | None:
    """Why ``part`` cannot run here (its real data is absent), or None."""
    if part.needs is not None and not (shared / part.needs).is_dir():
        return f"{shared / part.needs} not found"
    return None


# --------------------------------------------------------------------------------------- runner
def finished(job: Job, root: Path) -> bool:
    """Whether every cell of ``job`` is done in its ``results.json`` (the sweep need not run)."""
    path = job.part.out(root, job.seed) / "results.json"
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return False
    done = [c for c in cells if c.get("status") == "done"]
    return len(done) >= job.part.cells_per_seed()


def eta_seconds(remaining_cpu_s: float, workers: int, observed: Sequence[tuple[float, float]]
                ) -> float:
    """Wall seconds left: the remaining estimated CPU seconds over ``workers``, scaled by the
    ratio of wall time to estimate of the jobs run so far (``observed``: (wall, estimate))."""
    wall = sum(w for w, _ in observed)
    planned = sum(e for _, e in observed)
    scale = wall / planned if planned > 0 and wall > 0 else 1.0
    return remaining_cpu_s * scale / workers


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_jobs(
    jobs: Sequence[Job],
    root: Path,
    workers: int = 1,
    threads: int | None = 1,
    on_done: Callable[[Job, int], None] | None = None,
    say: Callable[[str], None] = print,
    hours: float | None = None,
) -> dict[str, int]:
    """Run the jobs' ``ilif sweep`` commands, ``workers`` at a time, each with ``threads`` CPU
    threads (one thread each is the fastest use of a small shared machine); their output goes to
    ``root/logs/<part>_s<seed>.log``. Jobs whose cells are all done are skipped without starting;
    after each job the progress and an ETA are printed. ``hours``: start no job after this many
    hours (the running ones finish), so the study runs in pieces. Returns the exit code of every
    job run by name; a job that fails does not stop the others (its cells record the error)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got workers={workers!r}")
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   NUMBA_NUM_THREADS=str(threads))
    pending = []
    for job in jobs:
        if finished(job, root):
            say(f"{job.name}: finished before, skipped")
        else:
            pending.append(job)
    total = len(pending)
    remaining = sum(job_cpu_seconds(job.part) for job in pending)
    say(f"study: {total} sweeps to run, about {remaining / 3600:.1f} CPU-hours by the pilot's "
        f"estimate ({_hms(remaining / workers)} at {workers} at a time)")
    running: dict[str, tuple[Job, subprocess.Popen, float, object]] = {}
    codes: dict[str, int] = {}
    observed: list[tuple[float, float]] = []
    begun = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _terminate)  # a kill stops the sweeps it started
    try:
        while pending or running:
            out_of_time = hours is not None and time.perf_counter() - begun > hours * 3600
            if out_of_time and pending:
                say(f"the {hours:g} hours are up: {len(pending)} sweeps left for the next run "
                    "(the same command resumes)")
                pending = []
            while pending and len(running) < workers:
                job = pending.pop(0)
                log_path = logs / f"{job.part.name}_s{job.seed}.log"
                log = log_path.open("a")
                command = job.part.command(root, job.seed, sys.executable, job.data_root)
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                running[job.name] = (job, process, time.perf_counter(), log)
                say(f"[{total - len(pending)}/{total}] {job.name}: started "
                    f"({job.part.cells_per_seed()} cells), log {log_path}")
            time.sleep(2.0)
            for name, (job, process, started, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()  # type: ignore[attr-defined]
                del running[name]
                codes[name] = process.returncode
                wall, planned = time.perf_counter() - started, job_cpu_seconds(job.part)
                observed.append((wall, planned))
                remaining -= planned
                say(f"{name}: finished with exit code {process.returncode} in {_hms(wall)} "
                    f"({len(codes)}/{total} done; ETA "
                    f"{_hms(eta_seconds(remaining, workers, observed))})")
                if on_done is not None:
                    on_done(job, process.returncode)
    except KeyboardInterrupt:
        for _job, process, _, log in running.values():
            process.terminate()
            process.wait()
            log.close()  # type: ignore[attr-defined]
        say("interrupted: rerun the same command to resume (finished cells are kept)")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return codes


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
