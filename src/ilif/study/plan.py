"""The sweeps of the study and the runner that carries them out (resumably, in parallel).

Each :class:`Part` is one ``ilif sweep`` grid over a training config of ``configs/study/``; it runs
once per seed into ``ROOT/<part>/s<seed>`` (so every seed of every part is a separate, resumable
sweep, and a study cut short still holds whole seeds). Cells shared by several tables (LIF and
ILIF at γ = 1 with the rectangle surrogate) are trained once, in the ``width`` part, and the
tables of items 2–5 read them from there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("runs/study")
SEEDS = (1, 2, 3)
PAPER_WIDTH = 1.0  # the paper's surrogate: rectangle of width γ = 1


@dataclass(frozen=True)
class Part:
    """One sweep of the study: a training config and a grid, run once per seed."""

    name: str
    config: str
    neurons: tuple[str, ...]
    widths: tuple[float, ...] = (PAPER_WIDTH,)
    surrogates: tuple[str, ...] = ("rectangle",)
    seeds: tuple[int, ...] = SEEDS
    analysis_batches: int | None = None
    needs: str | None = None  # the real-data folder it reads, relative to the shared data

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
        if self.analysis_batches is not None:
            args += ["--analysis-batches", str(self.analysis_batches)]
        if data_root is not None:
            args += ["--data-root", str(data_root)]
        return args

    def cells_per_seed(self) -> int:
        return len(self.neurons) * len(self.widths) * len(self.surrogates)


CIFAR = "configs/study/cifar10.yaml"
CIFAR_DATA = "cifar-10-batches-py"
NMNIST_DATA = "events/nmnist/NMNISTsmall"
WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)

PARTS: dict[str, Part] = {
    part.name: part for part in (
        # item 1: LIF vs ILIF over γ (also the LIF and ILIF rows of items 2–5)
        Part("width", CIFAR, ("lif", "ilif"), WIDTHS, seeds=(1, 2, 3, 4, 5), analysis_batches=5,
             needs=CIFAR_DATA),
        # item 2: the two inhibitory units alone
        Part("ablation", CIFAR, ("ilif-mpiu", "ilif-ciu"), analysis_batches=5, needs=CIFAR_DATA),
        # item 3: the other surrogate shapes at the same width
        Part("surrogate", CIFAR, ("lif", "ilif"), surrogates=("triangle", "sigmoid", "atan"),
             analysis_batches=5, needs=CIFAR_DATA),
        # item 4: the comparators
        Part("neurons", CIFAR, ("plif", "alif", "clif"), analysis_batches=5, needs=CIFAR_DATA),
        # item 6: the γ study on event data, and the real N-MNIST smoke check
        Part("dvs-width", "configs/study/digits-dvs.yaml", ("lif", "ilif"), WIDTHS,
             seeds=(1, 2, 3, 4, 5)),
        Part("nmnist-smoke", "configs/study/nmnist-smoke.yaml", ("lif", "ilif"), seeds=(1,),
             needs=NMNIST_DATA),
    )
}

# The order the study runs in: three seeds of item 1 first, then one seed of everything else,
# then the further seeds, so a study cut short holds the most useful cells.
ORDER: tuple[tuple[str, int], ...] = (
    ("width", 1), ("width", 2), ("width", 3),
    ("ablation", 1), ("neurons", 1), ("surrogate", 1), ("nmnist-smoke", 1),
    ("dvs-width", 1), ("dvs-width", 2), ("dvs-width", 3),
    ("ablation", 2), ("neurons", 2), ("surrogate", 2),
    ("ablation", 3), ("neurons", 3), ("surrogate", 3),
    ("width", 4), ("width", 5), ("dvs-width", 4), ("dvs-width", 5),
)


@dataclass(frozen=True)
class Job:
    part: Part
    seed: int
    data_root: Path | None = None  # the dataset folder of its sweeps (None: the config's)

    @property
    def name(self) -> str:
        return f"{self.part.name} s{self.seed}"


def study_jobs(parts: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> list[Job]:
    """The study's sweeps in run order, restricted to ``parts`` and ``seeds`` where given."""
    for name in parts or ():
        if name not in PARTS:
            raise ValueError(f"unknown study part {name!r}; valid parts: {', '.join(PARTS)}")
    # every seed of every part, those of ORDER first in its order
    order = [*ORDER, *((p.name, s) for p in PARTS.values() for s in p.seeds
                       if (p.name, s) not in ORDER)]
    return [Job(PARTS[name], seed) for name, seed in order
            if (not parts or name in parts) and (not seeds or seed in seeds)
            and seed in PARTS[name].seeds]


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
def run_jobs(
    jobs: Sequence[Job],
    root: Path,
    workers: int = 1,
    threads: int | None = 1,
    on_done: Callable[[Job, int], None] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, int]:
    """Run the jobs' ``ilif sweep`` commands, ``workers`` at a time, each with ``threads`` CPU
    threads (one thread each is the fastest use of a small shared machine); their output goes to
    ``root/logs/<part>_s<seed>.log``. Returns the exit code of every job by name; a job that fails
    does not stop the others (its cells record the error)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got workers={workers!r}")
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   NUMBA_NUM_THREADS=str(threads))
    pending = list(jobs)
    running: dict[str, tuple[Job, subprocess.Popen, float, object]] = {}
    codes: dict[str, int] = {}
    total = len(pending)
    previous = signal.signal(signal.SIGTERM, _terminate)  # a kill stops the sweeps it started
    try:
        while pending or running:
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
                say(f"{name}: finished with exit code {process.returncode} in "
                    f"{time.perf_counter() - started:.0f} s ({len(codes)}/{total} done)")
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
