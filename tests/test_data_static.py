"""Static datasets (digits, CIFAR), the registry and train/val split."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ilif import data
from ilif.data.errors import DatasetError, DatasetNotFoundError
from ilif.data.static import CIFAR10_MEAN, CIFAR10_STD, read_cifar_batch


# ------------------------------------------------------------------------------ registry
def test_registry_lists_every_dataset_with_consistent_info():
    assert data.list_datasets() == ["digits", "digits-dvs", "cifar10", "cifar100", "nmnist",
                                    "cifar10-dvs", "dvs-gesture", "imagenet"]
    for name in data.list_datasets():
        info = data.dataset_info(name)
        assert info.name == name and data.DATASETS[name] is info
        assert info.kind in ("static", "event")
        assert (info.default_T is None) == (info.kind == "static")
        assert info.needs_root == (name not in ("digits", "digits-dvs"))
        if info.kind == "event":
            assert info.in_channels == 2
    assert data.dataset_info("cifar10-dvs").image_size == (48, 48)
    assert data.dataset_info("dvs-gesture").num_classes == 11


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="cifar10-dvs") as err:
        data.get_dataset("mnist")
    assert "'mnist'" in str(err.value)
    with pytest.raises(ValueError, match="dvs-gesture"):
        data.dataset_info("places365")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split"):
        data.get_dataset("digits", split="val")
    with pytest.raises(ValueError, match="T must be"):
        data.get_dataset("digits-dvs", T=0)
    with pytest.raises(ValueError, match="never augmented"):
        data.get_dataset("digits", split="test", augment=True)
    with pytest.raises(DatasetError, match="cifar10 needs root"):
        data.get_dataset("cifar10")


# -------------------------------------------------------------------------------- digits
def test_digits_fixed_split_and_normalisation_match_sklearn():
    from sklearn.datasets import load_digits

    raw = load_digits()
    train = data.get_dataset("digits", split="train", augment=False)
    test = data.get_dataset("digits", split="test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.targets == raw.target[:1437].tolist()
    assert test.targets == raw.target[1437:].tolist()
    pixels = raw.images[:1437].astype(np.float64) / 16.0
    mean, std = pixels.mean(), pixels.std()
    x, y = test[5]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    expected = (raw.images[1437 + 5] / 16.0 - mean) / std
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-5)
    all_train = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(float(all_train.mean())) < 1e-4 and abs(float(all_train.std()) - 1.0) < 1e-3


def test_digits_training_split_is_augmented_by_default():
    train = data.get_dataset("digits")
    plain = data.get_dataset("digits", augment=False)
    torch.manual_seed(0)
    draws = [train[3][0] for _ in range(20)]
    assert any(not torch.equal(d, plain[3][0]) for d in draws)
    assert all(d.shape == (1, 8, 8) for d in draws)
    test = data.get_dataset("digits", split="test")
    assert torch.equal(test[0][0], test[0][0])


# --------------------------------------------------------------------------------- CIFAR
def test_cifar10_real_subset_counts_and_pixels(shared_data):
    train = data.get_dataset("cifar10", root=shared_data, split="train")
    test = data.get_dataset("cifar10", root=shared_data, split="test")
    assert (len(train), len(test)) == (10_000, 2_000)
    assert np.bincount(train.targets, minlength=10).tolist() == [1000] * 10
    assert np.bincount(test.targets, minlength=10).tolist() == [200] * 10
    assert test.classes[0] == "airplane" and test.classes[9] == "truck"
    with open(shared_data / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    image = raw[b"data"][7].reshape(3, 32, 32).astype(np.float64) / 255.0
    expected = (image - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[:, None,
                                                                                         None]
    x, y = test[7]
    assert x.shape == (3, 32, 32) and y == raw[b"labels"][7]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)


def test_cifar10_reads_whichever_batches_exist(shared_data, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    source = shared_data / "cifar-10-batches-py" / "data_batch_1"
    os.symlink(source, folder / "data_batch_1")
    os.symlink(source, folder / "data_batch_3")
    train = data.get_dataset("cifar10", root=tmp_path, split="train", augment=False)
    assert len(train) == 20_000
    assert torch.equal(train[0][0], train[10_000][0])
    with pytest.raises(DatasetNotFoundError, match="test_batch"):
        data.get_dataset("cifar10", root=tmp_path, split="test")


def test_truncated_cifar_batch_names_the_file(shared_data, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    raw = (shared_data / "cifar-10-batches-py" / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="test_batch.*truncated or corrupted"):
        data.get_dataset("cifar10", root=tmp_path, split="test")


def test_missing_cifar_root_explains_layout_and_source(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        data.get_dataset("cifar100", root=tmp_path / "nowhere")
    message = str(err.value)
    assert "nowhere" in message and "cifar-100-python" in message and "toronto" in message
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        data.get_dataset("cifar10", root=tmp_path)


def _write_cifar100(folder, n=12, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    content = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
               "fine_labels": rng.integers(0, 100, n).tolist(),
               "coarse_labels": rng.integers(0, 20, n).tolist(), "filenames": ["a"] * n}
    for part in ("train", "test"):
        with open(folder / part, "wb") as fh:
            pickle.dump(content, fh, protocol=2)
    return content


def test_cifar100_fine_and_coarse_labels(tmp_path):
    content = _write_cifar100(tmp_path / "cifar-100-python")
    fine = data.get_dataset("cifar100", root=tmp_path, split="test")
    coarse = data.get_dataset("cifar100", root=tmp_path, split="train", label_type="coarse")
    assert fine.targets == content["fine_labels"]
    assert coarse.targets == content["coarse_labels"]
    image = content["data"][3].reshape(3, 32, 32) / 255.0
    mean = np.array([0.5071, 0.4867, 0.4408])[:, None, None]
    std = np.array([0.2675, 0.2565, 0.2761])[:, None, None]
    np.testing.assert_allclose(fine[3][0].numpy(), (image - mean) / std, atol=1e-5)


def test_pickle_with_foreign_objects_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as fh:
        pickle.dump({"data": os.getcwd, "labels": []}, fh)
    with pytest.raises(DatasetError, match="unexpected object"):
        read_cifar_batch(path, "labels", 10)


@pytest.fixture(scope="module")
def small_batch_bytes():
    rng = np.random.default_rng(1)
    content = {b"batch_label": b"x", b"labels": rng.integers(0, 10, 6).tolist(),
               b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"filenames": [b"f"] * 6}
    return pickle.dumps(content, protocol=2)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cifar_reader_corruption_only_raises_dataset_error(tmp_path, small_batch_bytes, draw):
    raw = bytearray(small_batch_bytes)
    cut = draw.draw(st.integers(0, len(raw)))
    flips = draw.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                               max_size=4))
    for pos, mask in flips:
        raw[pos] ^= mask
    path = tmp_path / "data_batch_1"
    path.write_bytes(bytes(raw[:cut]))
    try:
        images, labels = read_cifar_batch(path, "labels", 10)
    except DatasetError as exc:
        assert "data_batch_1" in str(exc)
    else:
        assert images.shape == (len(labels), 3, 32, 32)
        assert labels.min(initial=0) >= 0 and labels.max(initial=0) < 10


# ------------------------------------------------------------------------- train/val split
def test_train_val_split_is_seeded_disjoint_and_uses_the_eval_view():
    augmented = data.get_dataset("digits", split="train")
    plain = data.get_dataset("digits", split="train", augment=False)
    train, val = data.train_val_split(augmented, 0.1, seed=3, eval_dataset=plain)
    again_train, again_val = data.train_val_split(augmented, 0.1, seed=3, eval_dataset=plain)
    assert train.indices == again_train.indices and val.indices == again_val.indices
    assert len(val) == round(0.1 * 1437) and len(train) + len(val) == 1437
    assert not set(train.indices) & set(val.indices)
    assert train.dataset is augmented and val.dataset is plain
    assert torch.equal(val[0][0], plain[val.indices[0]][0])
    _, other_val = data.train_val_split(augmented, 0.1, seed=4)
    assert other_val.indices != val.indices
    with pytest.raises(ValueError, match="two views"):
        data.train_val_split(augmented, 0.1, seed=3, eval_dataset=data.get_dataset(
            "digits", split="test"))
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(augmented, 1.0, seed=3)
