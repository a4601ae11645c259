"""ImageNet layout (real JPEG files written here), its transforms, the ImageNet ResNet-34s and a
smoke run of both through ``ilif train``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ilif.data import DatasetError, get_dataset
from ilif.data import imagenet as inet
from ilif.models import create_model
from ilif.train import TrainConfig, run_training

WNIDS = ("n01440764", "n01443537", "n02102040")  # three ILSVRC class ids
COLOURS = {"n01440764": (200, 30, 30), "n01443537": (30, 200, 30), "n02102040": (30, 30, 200)}
REPO = Path(__file__).resolve().parents[1]


def write_jpeg(path: Path, colour: tuple[int, int, int], size=(80, 60)) -> None:
    """A real JPEG: a flat colour with a white left column band (to see flips)."""
    pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)
    pixels[:] = colour
    pixels[:, : size[0] // 8] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)


def make_imagenet(root: Path, per_class: int = 2, flat_val: bool = False) -> Path:
    """``train/<wnid>/`` (``per_class`` each) and ``val/`` (one per class)."""
    labels = []
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            write_jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", COLOURS[wnid],
                       size=(80 + 8 * i, 60))
        name = f"ILSVRC2012_val_{c + 1:08d}.JPEG"
        if flat_val:
            write_jpeg(root / "val" / name, COLOURS[wnid], size=(64, 72))
            labels.append(f"{name} {wnid}")
        else:
            write_jpeg(root / "val" / wnid / name, COLOURS[wnid], size=(64, 72))
    if flat_val:
        (root / "val_labels.txt").write_text("# filename wnid\n" + "\n".join(labels) + "\n")
    return root


def expected_pixel(colour) -> torch.Tensor:
    return (torch.tensor(colour, dtype=torch.float32) / 255 - torch.tensor(inet.MEAN)) \
        / torch.tensor(inet.STD)


@pytest.mark.parametrize("flat_val", [False, True])
def test_layout_gives_decoded_images_labels_and_crops(tmp_path, flat_val):
    root = make_imagenet(tmp_path / "imagenet", flat_val=flat_val)
    train = get_dataset("imagenet", root, "train", image_size=32)
    test = get_dataset("imagenet", root, "test", image_size=32)
    assert train.classes == list(WNIDS) and test.classes == list(WNIDS)
    assert train.targets == [0, 0, 1, 1, 2, 2] and test.targets == [0, 1, 2]
    for x, y in (test[i] for i in range(len(test))):
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        # evaluation: resize the shorter side (64 -> 37) and crop the centre 32: no white band
        # (it spans 8 of 64 source columns, i.e. the left 4.6 of 37) reaches the centre; the
        # centre pixel decodes to the class colour (JPEG error within 4/255)
        centre = x[:, 16, 16]
        assert torch.allclose(centre, expected_pixel(COLOURS[WNIDS[y]]), atol=4 / 255 / 0.224)
    torch.manual_seed(0)
    x, y = train[0]
    assert x.shape == (3, 32, 32) and y == 0


def test_a_subset_of_classes_and_the_label_file_of_a_flat_val(tmp_path):
    root = make_imagenet(tmp_path / "imagenet", flat_val=True)
    test = get_dataset("imagenet", root, "test", classes=["n01443537", "n02102040"])
    assert test.classes == ["n01443537", "n02102040"] and test.targets == [0, 1]
    assert [f.name for f in test.files] == ["ILSVRC2012_val_00000002.JPEG",
                                            "ILSVRC2012_val_00000003.JPEG"]
    (root / "val_labels.txt").write_text("ILSVRC2012_val_00000001.JPEG\n")
    with pytest.raises(DatasetError, match=r"val_labels.txt, line 1: expected 'filename wnid'"):
        get_dataset("imagenet", root, "test")
    with pytest.raises(DatasetError, match="train does not exist"):
        get_dataset("imagenet", tmp_path / "elsewhere", "train")


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
    root = make_imagenet(tmp_path / "imagenet")
    train = get_dataset("imagenet", root, "train", image_size=16)
    garbage, truncated, gone = train.files[0], train.files[2], train.files[4]
    garbage.write_bytes(b"not a jpeg at all" * 10)
    truncated.write_bytes(truncated.read_bytes()[:300])
    gone.unlink()
    for index, path in ((0, garbage), (2, truncated), (4, gone)):
        with pytest.raises(DatasetError, match=str(path)):
            train[index]
    assert train[1][0].shape == (3, 16, 16)  # the others still load


def test_eval_crop_equals_resize_then_centre_crop():
    """Independent reference: PIL resize of the whole image to shorter side 256, then the centre
    224 cut by slicing (the two-step ImageNet evaluation transform)."""
    rng = np.random.default_rng(0)
    # 480×320: the resized image is exactly 384×256 and the crop starts at (80, 16) exactly
    source = Image.fromarray(rng.integers(0, 256, (320, 480, 3), dtype=np.uint8))
    out = np.asarray(inet.ResizeCenterCrop(256, 224)(source), dtype=np.float64)
    big = np.asarray(source.resize((384, 256), Image.Resampling.BILINEAR), dtype=np.float64)
    reference = big[16 : 16 + 224, 80 : 80 + 224]
    assert out.shape == reference.shape == (224, 224, 3)
    assert np.abs(out - reference).max() <= 1.0  # the same samples, up to rounding


def test_random_resized_crop_draws_boxes_within_the_recipe_ranges():
    crop = inet.RandomResizedCrop(224, generator=torch.Generator().manual_seed(0))
    areas, aspects = [], []
    for _ in range(400):
        left, top, w, h = crop.box(500, 375)
        assert 0 <= left and left + w <= 500 and 0 <= top and top + h <= 375
        areas.append(w * h / (500 * 375))
        aspects.append(w / h)
    assert 0.075 <= min(areas) and max(areas) <= 1.0
    assert 3 / 4 - 0.02 <= min(aspects) and max(aspects) <= 4 / 3 + 0.02
    # scale ~ U(0.08, 1) where the box fits: the mean area lies near 0.5 (fewer big boxes fit)
    assert 0.3 < float(np.mean(areas)) < 0.6
    # the fallback for an extreme aspect: the centre box of the nearest allowed aspect
    assert crop.box(1000, 10) == ((1000 - 13) // 2, 0, 13, 10)
    image = Image.new("RGB", (500, 375))
    assert crop(image).size == (224, 224)


def test_flip_mirrors_the_white_band():
    generator = torch.Generator().manual_seed(3)
    flip = inet.RandomFlip(generator)
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    pixels[:, 0] = 255
    image = Image.fromarray(pixels)
    flipped = [np.asarray(flip(image))[0, -1, 0] == 255 for _ in range(200)]
    assert 70 < sum(flipped) < 130  # about half, and a flip moves the band to the right edge


def test_resnet34_counts_and_stage_sizes():
    """The ImageNet ResNet-34 has the published 21,797,672 parameters at 1000 classes (He et al.
    2016, the same count as the torchvision model), with BN instead of conv biases; the stages
    see 56, 28, 14 and 7 pixels of a 224 image."""
    for name in ("resnet34", "sew-resnet34"):
        model = create_model(name, neuron="lif", num_classes=1000, T=1)
        assert sum(p.numel() for p in model.parameters()) == 21_797_672
    model = create_model("resnet34", neuron="lif", num_classes=5, T=1)
    sizes = []
    for i in (0, 3, 7, 13):
        model.blocks[i].register_forward_hook(lambda m, a, out: sizes.append(out.shape[-1]))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert sizes == [56, 28, 14, 7]


def test_sew_block_is_the_identity_when_its_neurons_stay_silent():
    """SEW ADD: y = SN(BN(conv(SN(BN(conv x))))) + x; a BN bias far below the threshold keeps
    the neurons silent, so the block passes its input through exactly."""
    from ilif.models.imagenet import SEWBlock
    from ilif.models.layers import neuron_factory

    block = SEWBlock(4, 4, 1, neuron_factory("ilif", 1.1)).eval()
    for bn in (block.conv_bn1.module[1], block.conv_bn2.module[1]):
        torch.nn.init.constant_(bn.bias, -100.0)
    x = (torch.rand(3, 2, 4, 6, 6) > 0.5).float()
    assert torch.equal(block(x), x)
    torch.nn.init.constant_(block.conv_bn2.module[1].bias, 100.0)  # neuron2 fires at once
    assert torch.all(block(x) >= x) and torch.any(block(x) == x + 1)


@pytest.mark.parametrize("model", ["resnet34", "sew-resnet34"])
def test_one_training_step_and_top5_evaluation(tmp_path, model):
    root = make_imagenet(tmp_path / "imagenet")
    config = TrainConfig(dataset="imagenet", data_root=str(root), model=model, T=2,
                         image_size=32, epochs=1, batch_size=6, limit_train_batches=1,
                         val_split=0, lr=0.1, quiet=True, out=str(tmp_path / "run"),
                         backend="torch")
    summary = run_training(config)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_samples"] == 6 and row["test_samples"] == 3
    # three classes: top-min(5, 3) = top-3 holds every label
    assert row["test_top5_accuracy"] == 1.0
    assert row["test_accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert math.isfinite(row["train_loss"]) and summary["parameters"] > 21_000_000


def test_cli_smoke_and_a_worker_error_is_one_line(tmp_path):
    root = make_imagenet(tmp_path / "imagenet", per_class=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    base = [sys.executable, "-m", "ilif", "train", "--dataset", "imagenet", "--data-root",
            str(root), "--model", "sew-resnet34", "--T", "1", "--epochs", "1",
            "--limit-train-batches", "1", "--image-size", "32", "--batch-size", "3",
            "--val-split", "0", "--quiet", "--backend", "torch"]
    done = subprocess.run(base + ["--out", str(tmp_path / "ok")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ok" / "summary.json").is_file()
    bad = root / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG"
    bad.write_bytes(b"\xff\xd8 broken")
    done = subprocess.run(base + ["--out", str(tmp_path / "bad"), "--workers", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0], done.stderr
    assert lines[0].startswith("ilif train: error: imagenet: cannot decode image file")
    assert "Traceback" not in done.stderr


def test_the_imagenet_config_keeps_the_recipes_batch_on_any_gpu_count():
    from ilif.train.runner import steps_per_update

    config = TrainConfig.from_yaml(REPO / "configs" / "imagenet-resnet34.yaml")
    assert (config.model, config.T, config.epochs, config.optimizer, config.lr,
            config.momentum, config.scheduler, config.amp, config.image_size) == (
        "sew-resnet34", 4, 320, "sgd", 0.1, 0.9, "cosine", True, 224)
    assert config.global_batch == 256 and config.batch_size == 32
    assert [steps_per_update(config, gpus) for gpus in (8, 4, 2, 1)] == [1, 2, 4, 8]
