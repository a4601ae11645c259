"""The study (``python -m ilif.study``): its configs, its plan, and docs/results.md generated from a
small fake results table (values chosen so the expected mean ± std and verdicts are known)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from ilif.analysis.sweep import write_results
from ilif.study import PARTS, study_jobs, write_results_doc
from ilif.study.__main__ import main
from ilif.study.plan import nmnist_tree
from ilif.study.stats import compare, fmt_mean_std, spearman
from ilif.train import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def test_every_study_config_is_a_valid_training_config():
    for part in PARTS.values():
        config = TrainConfig.from_yaml(REPO / part.config)
        assert config.tau == 1.1 and config.val_split < 1
    cifar = TrainConfig.from_yaml(REPO / "configs/study/cifar10.yaml")
    assert (cifar.dataset, cifar.model, cifar.T) == ("cifar10", "cifar-small", 4)


def test_plan_runs_item_1_whole_first_and_commands_name_config_and_seed():
    jobs = study_jobs()
    assert [j.name for j in jobs[:3]] == ["width s1", "width s2", "width s3"]
    assert len({j.name for j in jobs}) == len(jobs)
    assert {j.part.name for j in jobs} == set(PARTS)
    assert len(jobs) == sum(len(p.seeds) for p in PARTS.values())  # every seed of every part
    command = PARTS["ablation"].command("runs/study", 2)
    assert "--data-root" not in command
    assert PARTS["ablation"].command("r", 2, data_root="/data")[-2:] == ["--data-root", "/data"]
    assert command[1:4] == ["-m", "ilif", "sweep"]
    assert command[command.index("--seeds") + 1] == "2"
    assert command[command.index("--out") + 1] == str(Path("runs/study/ablation/s2"))
    assert study_jobs(["neurons"], [3])[0].name == "neurons s3"
    with pytest.raises(ValueError, match="unknown study part 'nope'"):
        study_jobs(["nope"])


def test_comparison_against_hand_computed_standard_error():
    comp = compare([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert comp.diff == 2.0 and math.isclose(comp.se, math.sqrt(1 / 3))
    assert comp.beyond_noise and comp.verdict() == "higher, beyond seed noise"
    close = compare([1.0, 2.0, 3.0], [1.5, 1.5, 1.6])
    assert not close.beyond_noise and close.verdict().endswith("within seed noise")
    single = compare([5.0], [1.0])
    assert not single.beyond_noise and "noise not estimated" in single.verdict()
    assert fmt_mean_std([0.5, 0.6, 0.7], 2) == "0.60 ± 0.10" and fmt_mean_std([], 2) == "–"
    assert spearman([1, 2, 3, 4], [10, 20, 15, 40]) == pytest.approx(0.8)


LAYERS = ("features.0.neuron", "features.1.neuron")
# test accuracy per (neuron, width) for seeds 1, 2, 3; firing rate mean per (neuron, width)
ACCURACY = {("lif", 0.25): (0.50, 0.60, 0.70), ("ilif", 0.25): (0.61, 0.62, 0.63),
            ("lif", 1.0): (0.60, 0.61, 0.62), ("ilif", 1.0): (0.62, 0.63, 0.64),
            ("lif", 4.0): (0.58, 0.60, 0.62), ("ilif", 4.0): (0.60, 0.61, 0.62)}
FIRING = {("lif", 0.25): 0.10, ("lif", 1.0): 0.20, ("lif", 4.0): 0.30,
          ("ilif", 0.25): 0.05, ("ilif", 1.0): 0.06, ("ilif", 4.0): 0.07}


def fake_row(neuron: str, width: float, seed: int) -> dict:
    firing = FIRING[(neuron, width)] + 0.001 * (seed - 2)
    cell = f"{neuron}_rectangle_w{width:g}_s{seed}"
    return {
        "cell": cell, "neuron": neuron, "variant": "", "surrogate": "rectangle",
        "width": width, "seed": seed, "status": "done", "epochs": 3,
        "test_acc": ACCURACY[(neuron, width)][seed - 1], "val_acc": 0.5, "firing_rate": firing,
        "open_rate": 0.2 * width / 4, "surrogate_mean": 0.1, "overactive_share": 0.01,
        "dead_share": 0.0, "grad_norm": 0.01, "grad_norm_first_layer": 0.002,
        "grad_norm_last_layer": 0.02, "flops": 2.0e7, "sops": 1.0e6,
        "synaptic_energy_pj": 1.0e6 * (2 if neuron == "lif" else 1),
        "neuron_energy_pj": 1.0e5 * (1 if neuron == "lif" else 4),
        "memory_energy_pj": 0.0, "ann_energy_pj": 9.2e7, "seconds": 60.0 + seed,
        "snn_energy_pj": 1.0e6 * (2 if neuron == "lif" else 1)
        + 1.0e5 * (1 if neuron == "lif" else 4),
        "energy_ratio": 0.02, "run_dir": "",
    }


def fake_details(row: dict) -> dict:
    return {"layers": {name: {"firing_rate": row["firing_rate"]} for name in LAYERS},
            "layer_grad_norm": {LAYERS[0]: 0.002, LAYERS[1]: 0.02}}


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2, 3):
        rows = [fake_row(n, w, seed) for n in ("lif", "ilif") for w in (0.25, 1.0, 4.0)]
        write_results(root / "width" / f"s{seed}", rows, {r["cell"]: fake_details(r) for r in rows})
    failed = dict(fake_row("lif", 1.0, 1), cell="plif_rectangle_w1_s1", neuron="plif",
                  status="failed: RuntimeError: boom")
    write_results(root / "neurons" / "s1", [failed], {})
    return root


def test_results_doc_from_a_fake_table(fake_root, tmp_path, monkeypatch):
    """``python -m ilif.study --write-only``: the page from the results, the same page again."""
    monkeypatch.chdir(REPO)  # the configs are read from the repository
    doc = tmp_path / "docs" / "results.md"
    figures = tmp_path / "docs" / "figures" / "results"
    args = ["--root", str(fake_root), "--doc", str(doc), "--figures", str(figures), "--write-only"]
    figures.mkdir(parents=True)
    (figures / "old_layout.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # shown by no page any more
    assert main(args) == 0
    assert not (figures / "old_layout.png").exists()
    text = doc.read_text()
    assert write_results_doc(fake_root, doc, figures) == doc and doc.read_text() == text
    # mean ± std over the three seeds, computed by hand
    assert "| LIF | 0.25 | 3 | 60.00 ± 10.00 | 0.1000 ± 0.0010 |" in text
    assert "| ILIF | 1 | 3 | 63.00 ± 1.00 | 0.0600 ± 0.0010 |" in text
    assert "This page was generated from 18 finished runs (1 failed runs left out)" in text
    # generated findings follow the numbers
    assert "LIF's test firing rate rises with γ: 0.1000 at γ = 0.25 → 0.3000 at γ = 4" in text
    assert "an increase, beyond seed noise" in text
    assert "ILIF fires less than LIF at 3 of 3 widths (beyond seed noise at 3 of them); ILIF/LIF " \
        "firing-rate ratio 0.500 at γ = 0.25, 0.300 at γ = 1, 0.233 at γ = 4." in text
    # LIF at 0.25 (60 ± 10) vs ILIF (62 ± 1): ILIF higher, but within the noise
    assert re.search(r"Test accuracy at γ = 0\.25: ILIF 62\.00 % vs LIF 60\.00 % .*within seed "
                     r"noise\.", text)
    # energy: ILIF synaptic 1000 nJ vs LIF 2000 nJ; with updates 1400 vs 2100
    assert "ILIF/LIF = 0.500." in text and "ILIF/LIF = 0.667." in text
    assert "… and still less with the neuron-state updates counted (beyond the paper): " \
        "**agrees**." in text
    assert "The neuron-state updates are 28.6 % of ILIF's energy and 4.8 % of LIF's." in text
    # parts without results say so, and the reproduction commands are there
    assert "Not run yet: no finished cell of the `ablation` sweep" in text
    assert "ilif sweep --config configs/study/cifar10.yaml --neurons lif,ilif" in text
    assert "95.49" in text and "estimate" in text
    # every figure the page links exists and is a PNG
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 6
    for link in links:
        path = (doc.parent / link).resolve()
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
        assert path.parent == figures.resolve()
    assert len(list(figures.glob("*.png"))) == len(set(links))


def test_nmnist_tree_links_the_real_recordings(shared_data, tmp_path):
    root = nmnist_tree(shared_data, tmp_path / "nmnist")
    train = sorted(root.glob("Train/*/*.bin"))
    test = sorted(root.glob("Test/*/*.bin"))
    assert len(train) == 10 and len(test) == 10
    assert {p.parent.name for p in train} == {str(d) for d in range(10)}
    assert all(p.is_symlink() and p.resolve().suffix == ".bs2" for p in train + test)
    assert (root / "Train" / "1" / "00004.bin").exists()  # id 4 has label 1 (SOURCES.md)
    nmnist_tree(shared_data, root)  # again: nothing to do, no error
