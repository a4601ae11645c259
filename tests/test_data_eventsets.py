"""Event datasets end to end: N-MNIST tree from the real files, CIFAR10-DVS class folders,
DVS128 Gesture recordings with the real label format, digits-dvs."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from ilif import data
from ilif.data import events as ev
from ilif.data.errors import DatasetError, DatasetNotFoundError
from ilif.data.eventsets import CIFAR10_CLASSES


def read_label_lists(folder):
    labels = {}
    for name in ("train1K.txt", "test100.txt"):
        for line in (folder / name).read_text().splitlines()[1:]:
            sample, label = line.split()
            labels[int(sample)] = int(label)
    return labels


@pytest.fixture
def nmnist_root(shared_data, tmp_path):
    """The standard ``Train/<label>/<id>.bin`` tree, linking the real NMNISTsmall files."""
    folder = shared_data / "events" / "nmnist" / "NMNISTsmall"
    labels = read_label_lists(folder)
    root = tmp_path / "nmnist"
    expected = {}
    for path in folder.glob("*.bs2"):
        sample = int(path.stem)
        split, number = ("Train", sample) if sample <= 60000 else ("Test", sample - 60000)
        target = root / split / str(labels[sample]) / f"{number:05d}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
        expected[target] = (labels[sample], path.stat().st_size // 5)
    return root, expected


def test_nmnist_tree_from_real_files(nmnist_root, tmp_path):
    root, expected = nmnist_root
    for split in ("train", "test"):
        dataset = data.get_dataset("nmnist", root=root, split=split, T=5,
                                   cache_dir=tmp_path / "cache")
        assert len(dataset) == 10 and sorted(dataset.targets) == list(range(10))
        for index, sample in enumerate(dataset.samples):
            label, count = expected[sample.source]
            x, y = dataset[index]
            assert y == label and x.shape == (5, 2, 34, 34) and x.dtype == torch.float32
            assert float(x.sum()) == count
    assert (root / "Train" / "1" / "00004.bin").exists()  # id 4 → label 1 (SOURCES.md)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 20
    again = data.get_dataset("nmnist", root=root, split="test", T=5, cache_dir=tmp_path / "cache")
    assert torch.equal(again[3][0], dataset[3][0])


def test_event_dataset_cache_defaults_to_root_and_can_be_off(nmnist_root):
    root, _ = nmnist_root
    dataset = data.get_dataset("nmnist", root=root, split="test", T=3)
    dataset.prepare(progress=False)
    assert len(list((root / ".ilif-cache").rglob("*.npz"))) == 10
    uncached = data.get_dataset("nmnist", root=root, split="test", T=4, cache=False)
    assert uncached[0][0].shape == (4, 2, 34, 34)
    assert len(list((root / ".ilif-cache").rglob("*.npz"))) == 10


def test_nmnist_missing_layout_is_explained(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        data.get_dataset("nmnist", root=tmp_path, cache=False)
    assert "Train/<0-9>/<id>.bin" in str(err.value) and "garrickorchard" in str(err.value)
    (tmp_path / "Train" / "3").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="lacks the digit folders 0, 1, 2, 4"):
        data.get_dataset("nmnist", root=tmp_path, cache=False)


def test_corrupted_sample_is_reported_not_silenced(nmnist_root, tmp_path):
    root, _ = nmnist_root
    victim = next((root / "Test" / "7").glob("*.bin"))
    raw = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(raw[:-1])
    dataset = data.get_dataset("nmnist", root=root, split="test", cache_dir=tmp_path / "c")
    index = [s.source for s in dataset.samples].index(victim)
    with pytest.raises(DatasetError, match=f"{victim.name}.*truncated"):
        dataset[index]


# ------------------------------------------------------------------------- CIFAR10-DVS
@pytest.fixture
def cifar10dvs_root(shared_data, tmp_path):
    root = tmp_path / "CIFAR10-DVS"
    counts = {}
    for index, cls in enumerate(CIFAR10_CLASSES):
        for i in range(10):
            path = root / cls / f"cifar10_{cls}_{i}.aedat"
            n = 20 + 10 * index + i
            ev.write_aedat2(path, ev.make_events(np.arange(n) * 100, np.arange(n) % 128,
                                                 (np.arange(n) * 7) % 128, np.arange(n) % 2))
            counts[path] = n
    converted = root / "cat" / "cifar10_cat_10.aedat4"  # the converted (AEDAT 4.0) release
    ev.write_aedat4(converted, ev.make_events(np.arange(33), np.arange(33), np.arange(33),
                                              np.arange(33) % 2), (128, 128))
    counts[converted] = 33
    real = root / "bird" / "cifar10_bird_10.aedat"
    shutil.copy(shared_data / "events" / "format_standins" / "alex_walking_again.aedat", real)
    counts[real] = 19182
    return tmp_path, counts


def test_cifar10dvs_split_frames_and_counts(cifar10dvs_root):
    root, counts = cifar10dvs_root
    cache = root / "cache"
    train = data.get_dataset("cifar10-dvs", root=root, split="train", cache_dir=cache)
    test = data.get_dataset("cifar10-dvs", root=root, split="test", cache_dir=cache)
    real = root / "CIFAR10-DVS" / "bird" / "cifar10_bird_10.aedat"
    train_files = {s.source for s in train.samples}
    test_files = {s.source for s in test.samples}
    assert not train_files & test_files and train_files | test_files == set(counts)
    assert np.bincount(train.targets).tolist() == [9, 9, 10, 10, 9, 9, 9, 9, 9, 9]
    assert np.bincount(test.targets).tolist() == [1] * 10
    # the documented split: per class, default_rng([1234, class]) permutes the sorted files
    bird = sorted((root / "CIFAR10-DVS" / "bird").glob("*.aedat"),
                  key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    held_out = bird[np.random.default_rng([1234, 2]).permutation(11)[10]]
    assert test.samples[2].source == held_out
    for dataset in (train, test):
        for index in range(len(dataset)):
            x, y = dataset[index]
            assert x.shape == (10, 2, 48, 48)
            assert float(x.sum()) == counts[dataset.samples[index].source]
            assert y == CIFAR10_CLASSES.index(dataset.samples[index].source.parent.name)
    holder = train if real in train_files else test
    x, y = holder[[s.source for s in holder.samples].index(real)]
    assert y == CIFAR10_CLASSES.index("bird")
    assert float(x.sum()) == 19182


def test_cifar10dvs_options_and_augmentation(cifar10dvs_root):
    root, counts = cifar10dvs_root
    full = data.get_dataset("cifar10-dvs", root=root, split="test", T=4, size=None,
                            split_by="time", cache=False)
    x, _ = full[0]
    assert x.shape == (4, 2, 128, 128) and float(x.sum()) == counts[full.samples[0].source]
    smooth = data.get_dataset("cifar10-dvs", root=root, split="test", T=4,
                              resize_mode="interpolate", cache=False)
    assert smooth[0][0].shape == (4, 2, 48, 48)
    augmented = data.get_dataset("cifar10-dvs", root=root, split="train", T=4, augment=True,
                                 cache=False)
    assert augmented[0][0].shape == (4, 2, 48, 48)
    shutil.rmtree(root / "CIFAR10-DVS" / "ship")
    with pytest.raises(DatasetNotFoundError, match="lacks the class folders ship"):
        data.get_dataset("cifar10-dvs", root=root, cache=False)


# ---------------------------------------------------------------------- DVS128 Gesture
@pytest.fixture
def gesture_root(shared_data, tmp_path):
    root = tmp_path / "DvsGesture"
    root.mkdir()
    labels_file = shared_data / "events" / "dvs_gesture" / "user01_natural_labels.csv"
    shutil.copy(labels_file, root / "user01_natural_labels.csv")
    rng = np.random.default_rng(9)
    t = np.sort(rng.integers(50_000_000, 180_000_000, 6000))
    events = ev.make_events(t, rng.integers(0, 128, 6000), rng.integers(0, 128, 6000),
                            rng.integers(0, 2, 6000))
    ev.write_aedat31(root / "user01_natural.aedat", events, events_per_packet=500)
    other = ev.make_events(np.arange(100) * 1000, np.arange(100), np.arange(100), np.ones(100))
    ev.write_aedat31(root / "user02_led.aedat", other)
    (root / "user02_led_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n11,0,40000\n2,40000,100000\n")
    (root / "trials_to_train.txt").write_text("user01_natural.aedat\n\n")
    (root / "trials_to_test.txt").write_text("user02_led.aedat\n")
    rows = [tuple(int(v) for v in line.split(","))
            for line in labels_file.read_text().splitlines()[1:]]
    return tmp_path, events, rows


def test_dvs_gesture_one_sample_per_labelled_gesture(gesture_root):
    root, events, rows = gesture_root
    train = data.get_dataset("dvs-gesture", root=root, split="train", T=4,
                             cache_dir=root / "cache")
    assert len(train) == 12
    assert train.targets == [label - 1 for label, _, _ in rows]
    for index, (_, start, end) in enumerate(rows):
        x, y = train[index]
        assert x.shape == (4, 2, 128, 128)
        inside = int(((events["t"] >= start) & (events["t"] < end)).sum())
        assert inside > 0 and float(x.sum()) == inside
    test = data.get_dataset("dvs-gesture", root=root, split="test")
    assert test.targets == [10, 1] and test[0][0].shape == (20, 2, 128, 128)
    assert float(test[0][0].sum()) == 40 and float(test[1][0].sum()) == 60


def test_dvs_gesture_decodes_each_recording_once(gesture_root):
    root, _, rows = gesture_root
    dataset = data.get_dataset("dvs-gesture", root=root, split="train", T=2,
                               cache_dir=root / "c2")
    reads = []
    original = dataset.reader
    dataset.reader = lambda path: reads.append(path) or original(path)
    first = dataset[7][0]
    assert len(reads) == 1 and len(list((root / "c2").rglob("*.npz"))) == len(rows)
    for index in (0, 11, 7):
        dataset[index]
    assert len(reads) == 1
    fresh = data.get_dataset("dvs-gesture", root=root, split="train", T=2, cache=False)
    assert torch.equal(fresh[7][0], first)


def test_dvs_gesture_bad_layout_messages(gesture_root):
    root, _, _ = gesture_root
    base = root / "DvsGesture"
    (base / "trials_to_test.txt").write_text("user03_lab.aedat\n")
    with pytest.raises(DatasetNotFoundError, match=r"user03_lab\.aedat.*does not exist"):
        data.get_dataset("dvs-gesture", root=root, split="test", cache=False)
    (base / "user02_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n2,9,3\n")
    (base / "trials_to_test.txt").write_text("user02_led.aedat\n")
    with pytest.raises(DatasetError, match=r"user02_led_labels\.csv, line 2"):
        data.get_dataset("dvs-gesture", root=root, split="test", cache=False)
    with pytest.raises(DatasetNotFoundError, match="trials_to_train.txt"):
        data.get_dataset("dvs-gesture", root=root / "elsewhere", cache=False)


# ------------------------------------------------------------------------ digits-dvs
def test_digits_dvs_frames_count_emulated_events():
    from sklearn.datasets import load_digits

    test = data.get_dataset("digits-dvs", split="test")
    assert len(test) == 360 and test.targets == load_digits().target[1437:].tolist()
    streams = ev.from_images(load_digits().images[1437:1440] / 16.0)
    for index in range(3):
        x, y = test[index]
        assert x.shape == (8, 2, 8, 8) and float(x.sum()) == len(streams[index]) > 0
    info = data.dataset_info("digits-dvs")
    assert x.shape == (info.default_T, info.in_channels, *info.image_size)
    assert data.get_dataset("digits-dvs", split="test", T=3)[0][0].shape == (3, 2, 8, 8)
    small = data.get_dataset("digits-dvs", split="train", size=(4, 4), augment=True)
    x, _ = small[0]
    assert x.shape == (8, 2, 4, 4)
