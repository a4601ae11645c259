"""Loader throughput per worker (one process, one thread): what one DataLoader worker delivers.

- JPEG: ImageNet-layout files (500×375, the median ImageNet photo size; real CIFAR-10 photos of
  ../shared/data scaled up, or a synthetic scene where that folder is absent) through ilif's
  training transform (decode, random-resized crop 224, flip, normalise) and evaluation transform
  (decode, resize 256, centre 224, normalise), against a plain PIL decode + centre crop 224 of
  the same files, and a PIL decode + resize 256 + centre crop 224 (no tensor); no peer pipeline
  runs without torchvision here.
- Event→frame: the real recordings of ../shared/data (N-MNIST, the DVS128 AEDAT 2.0 file, the
  AEDAT 4 file) integrated into T frames by ilif's split by number, SpikingJelly's
  ``integrate_events_by_fixed_frames_number`` and tonic's ``ToFrame(n_event_bins=T)``, on the
  same decoded events (decoding is not timed).

The variants run interleaved, round after round; the table gives the median rate of the rounds
and ilif's ratio to each baseline (> 1: ilif faster). docs/data.md records runs.

    python benchmarks/data.py [--rounds 7] [--images 48] [--out benchmarks/results/data-cpu.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
try:
    import ilif  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from ilif.data import events as ev  # noqa: E402
from ilif.data import get_dataset  # noqa: E402
from ilif.data.frames import integrate  # noqa: E402
from ilif.data.tonic_io import tonic_sensor_size  # noqa: E402
from ilif.files import write_json  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
IMAGE_SIZE = (500, 375)


# ------------------------------------------------------------------------------------- inputs
def cifar_photos(count: int) -> list[np.ndarray]:
    """Up to ``count`` real 32×32 photos from the CIFAR-10 subset (empty when absent)."""
    import pickle

    path = SHARED / "cifar-10-batches-py" / "test_batch"
    if not path.is_file():
        return []
    with path.open("rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    data = np.asarray(batch["data"][:count], dtype=np.uint8)
    return list(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def write_imagenet(root: Path, count: int) -> tuple[Path, str]:
    """``count`` JPEGs (quality 90) in ``root/train/<wnid>/``; returns the root and the source."""
    photos = cifar_photos(count)
    rng = np.random.default_rng(0)
    for i in range(count):
        if photos:
            image = Image.fromarray(photos[i]).resize(IMAGE_SIZE, Image.Resampling.BICUBIC)
            noise = rng.normal(0, 6, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3))  # sensor grain
            pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255)
        else:
            yy, xx = np.mgrid[0 : IMAGE_SIZE[1], 0 : IMAGE_SIZE[0]]
            pixels = np.stack([xx % 256, yy % 256, (xx + yy + 40 * i) % 256], -1)
            pixels = pixels + rng.normal(0, 20, pixels.shape)
            pixels = np.clip(pixels, 0, 255)
        folder = root / "train" / f"n{i % 4:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img_{i}.JPEG", quality=90)
    return root, ("CIFAR-10 photos scaled to 500×375 + grain" if photos else "synthetic scenes")


def event_sets() -> dict[str, tuple[list[np.ndarray], tuple[int, int], int]]:
    """Name -> (decoded recordings, sensor (H, W), T) for the recordings found."""
    sets: dict[str, tuple[list[np.ndarray], tuple[int, int], int]] = {}
    nmnist = sorted((SHARED / "events" / "nmnist" / "NMNISTsmall").glob("*.bs2"))
    if nmnist:
        sets["N-MNIST (34×34, T=10)"] = ([ev.read_nmnist_bin(f) for f in nmnist],
                                         ev.NMNIST_SENSOR, 10)
    dvs = SHARED / "events" / "format_standins" / "alex_walking_again.aedat"
    if dvs.is_file():
        sets["DVS128 AEDAT 2.0 (128×128, T=20)"] = ([ev.read_aedat2(dvs)], ev.DVS128_SENSOR, 20)
    aedat4 = SHARED / "events" / "format_standins" / "sample.aedat4"
    if aedat4.is_file():
        from ilif.data.aedat4 import read_aedat4

        events = read_aedat4(aedat4)
        sensor = (int(events["y"].max()) + 1, int(events["x"].max()) + 1)
        sensor = (max(sensor[0], 240), max(sensor[1], 320))
        sets["DVXplorer AEDAT 4 (240×320, T=10)"] = ([events], sensor, 10)
    return sets


def spikingjelly_integrator() -> Callable | None:
    """SpikingJelly's ``integrate_events_by_fixed_frames_number`` (its module imports
    torchvision, which does not load here: the functions are compiled on their own)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from data_fixtures import spikingjelly_functions

        return spikingjelly_functions(
            "integrate_events_segment_to_frame", "cal_fixed_frames_number_segment_index",
            "integrate_events_by_fixed_frames_number",
        )["integrate_events_by_fixed_frames_number"]
    except BaseException as exc:  # pytest's skip is a BaseException
        print(f"SpikingJelly unavailable: {exc}")
        return None


# ------------------------------------------------------------------------------------ timing
def interleaved(variants: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[float]]:
    """Items per second of each variant (each call returns its item count), per round."""
    for run in variants.values():  # warm-up
        run()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            items = run()
            rates[name].append(items / (time.perf_counter() - start))
    return rates


def jpeg_rows(rounds: int, count: int) -> tuple[list[dict], str]:
    with tempfile.TemporaryDirectory() as tmp:
        root, source = write_imagenet(Path(tmp), count)
        train = get_dataset("imagenet", root, "train")
        plain_eval = get_dataset("imagenet", root, "train", augment=False)
        files = train.files

        def ilif_train() -> int:
            for i in range(len(train)):
                train[i]
            return len(train)

        def ilif_eval() -> int:
            for i in range(len(plain_eval)):
                plain_eval[i]
            return len(plain_eval)

        def pil_crop() -> int:
            for path in files:
                with Image.open(path) as image:
                    w, h = image.size
                    box = ((w - 224) // 2, (h - 224) // 2, (w + 224) // 2, (h + 224) // 2)
                    np.asarray(image.convert("RGB").crop(box))
            return len(files)

        def pil_resize_crop() -> int:
            for path in files:
                with Image.open(path) as image:
                    w, h = image.size
                    scale = 256 / min(w, h)
                    image = image.convert("RGB").resize((round(w * scale), round(h * scale)),
                                                        Image.Resampling.BILINEAR)
                    w, h = image.size
                    box = ((w - 224) // 2, (h - 224) // 2, (w + 224) // 2, (h + 224) // 2)
                    np.asarray(image.crop(box))
            return len(files)

        torch.manual_seed(0)
        rates = interleaved({"ilif train transform": ilif_train,
                             "ilif eval transform": ilif_eval,
                             "PIL decode + crop": pil_crop,
                             "PIL decode+resize+crop": pil_resize_crop}, rounds)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    baselines = ("PIL decode + crop", "PIL decode+resize+crop")
    rows = [{"task": "JPEG 500×375 → 224", "variant": name, "per_s": rate,
             "ratio_vs": {} if name in baselines else {b: rate / medians[b] for b in baselines}}
            for name, rate in medians.items()]
    return rows, source


def event_rows(rounds: int) -> list[dict]:
    sj = spikingjelly_integrator()
    import tonic.transforms

    rows = []
    for task, (recordings, sensor, T) in event_sets().items():
        to_frame = tonic.transforms.ToFrame(sensor_size=tonic_sensor_size(sensor),
                                            n_event_bins=T)
        columns = [{k: r[k] for k in "txyp"} for r in recordings]
        variants: dict[str, Callable[[], int]] = {}

        def ours(recordings=recordings, T=T, sensor=sensor) -> int:
            for events in recordings:
                integrate(events, T, sensor, "number")
            return len(recordings)

        variants["ilif integrate"] = ours
        if sj is not None:
            def spikingjelly(columns=columns, T=T, sensor=sensor) -> int:
                for events in columns:
                    sj(events, "number", T, sensor[0], sensor[1])
                return len(columns)

            variants["SpikingJelly"] = spikingjelly

        def tonic_frames(recordings=recordings, to_frame=to_frame) -> int:
            for events in recordings:
                to_frame(events)
            return len(recordings)

        variants["tonic ToFrame"] = tonic_frames
        repeat = max(1, 300_000 // sum(len(r) for r in recordings))  # ≥ 300k events a round
        rates = interleaved({n: _repeated(f, repeat) for n, f in variants.items()}, rounds)
        mine = statistics.median(rates["ilif integrate"])
        events = sum(len(r) for r in recordings) / len(recordings)
        for name, r in rates.items():
            rows.append({"task": f"{task}, {events:,.0f} events/recording", "variant": name,
                         "per_s": statistics.median(r),
                         "ratio_vs": {} if name != "ilif integrate" else {
                             other: mine / statistics.median(o) for other, o in rates.items()
                             if other != name}})
    return rows


def _repeated(run: Callable[[], int], times: int) -> Callable[[], int]:
    def repeated() -> int:
        return sum(run() for _ in range(times))

    return repeated


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--images", type=int, default=48, help="JPEG files")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data-cpu.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker
    rows, source = jpeg_rows(args.rounds, args.images)
    rows += event_rows(args.rounds)
    width = max(len(r["task"]) for r in rows)
    print(f"{'task':<{width}}  {'variant':<22} {'items/s':>10}  ratio (ilif / baseline)")
    for row in rows:
        ratios = ", ".join(f"{v:.2f}× vs {k}" for k, v in row["ratio_vs"].items())
        print(f"{row['task']:<{width}}  {row['variant']:<22} {row['per_s']:>10.1f}  {ratios}")
    write_json(args.out, {"rows": rows, "rounds": args.rounds, "images": args.images,
                          "image_source": source, "threads": 1,
                          "machine": platform.processor() or platform.machine(),
                          "torch": torch.__version__})
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
