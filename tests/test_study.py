"""The study (``python -m ilif.study``): its configs and plan, the endpoints on fake summaries
with hand-computed values, and docs/results.md rebuilt from them byte for byte."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ilif.analysis.sweep import write_results
from ilif.study import PARTS, study_jobs, write_results_doc
from ilif.study.__main__ import main
from ilif.study.endpoints import ENDPOINTS, analyse, endpoint_values
from ilif.study.load import Results, export, label, load
from ilif.study.plan import Job, eta_seconds, finished, nmnist_tree, run_jobs, sgd_steps
from ilif.train import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def test_every_study_config_is_a_valid_training_config_and_long_enough():
    for part in PARTS.values():
        config = TrainConfig.from_yaml(REPO / part.config)
        assert config.tau == (2.0 if part.name == "tau2" else 1.1) and config.val_split < 1
    for name in ("primary-sgd", "primary-adamw"):
        part = PARTS[name]
        config = TrainConfig.from_yaml(REPO / part.config)
        assert (config.dataset, config.model, config.T) == ("cifar10", "cifar-small", 4)
        assert config.limit_train_batches is None and config.limit_eval_batches is None
        # 9,000 training images, batches of 64 (the last partial one dropped), 6 epochs
        assert sgd_steps(part) == 140 * 6 >= 800
        assert part.primary and part.trajectories and part.widths == (0.25, 1.0, 4.0)
    assert TrainConfig.from_yaml(REPO / PARTS["primary-adamw"].config).optimizer == "adamw"
    assert PARTS["primary-sgd"].seeds == PARTS["primary-adamw"].seeds  # paired by seed


def test_plan_runs_the_primary_pairs_first_and_commands_name_config_and_seed():
    jobs = study_jobs()
    assert [j.name for j in jobs[:4]] == ["primary-sgd s1", "primary-adamw s1",
                                          "primary-sgd s2", "primary-adamw s2"]
    assert len({j.name for j in jobs}) == len(jobs)
    assert {j.part.name for j in jobs} == set(PARTS)
    assert len(jobs) == sum(len(p.seeds) for p in PARTS.values())
    command = PARTS["gradient-paths"].command("runs/study", 2)
    assert command[1:4] == ["-m", "ilif", "sweep"]
    assert command[command.index("--seeds") + 1] == "2"
    assert command[command.index("--variants") + 1] == "full,detach-reset,detach-inhibition"
    assert command[command.index("--epochs") + 1] == "3" and "--trajectories" in command
    assert command[command.index("--out") + 1] == str(Path("runs/study/gradient-paths/s2"))
    assert PARTS["tau2"].command("r", 1, data_root="/data")[-2:] == ["--data-root", "/data"]
    with pytest.raises(ValueError, match="unknown study part 'nope'"):
        study_jobs(["nope"])
    # seeds beyond the plan's add pairs to the primary arms
    assert [j.name for j in study_jobs(["primary-sgd", "primary-adamw"], [7, 8])] == [
        "primary-sgd s7", "primary-adamw s7", "primary-sgd s8", "primary-adamw s8"]


def test_finished_jobs_are_skipped_and_the_eta_scales_with_observed_speed(tmp_path):
    job = Job(PARTS["tau2"], 1)
    assert not finished(job, tmp_path)
    rows = [{"cell": f"c{i}", "status": "done"} for i in range(PARTS["tau2"].cells_per_seed())]
    write_results(tmp_path / "tau2" / "s1", rows, {})
    assert finished(job, tmp_path)
    # 3,600 estimated CPU-seconds left on 2 workers; jobs so far took 1.5× their estimate
    assert eta_seconds(3600.0, 2, [(150.0, 100.0), (300.0, 200.0)]) == pytest.approx(2700.0)
    assert eta_seconds(3600.0, 1, []) == 3600.0
    lines: list[str] = []
    assert run_jobs([job], tmp_path, say=lines.append) == {}  # nothing started
    assert lines[0] == "tau2 s1: finished before, skipped"
    assert lines[1].startswith("study: 0 sweeps to run")


def test_labels_come_from_the_neuron_registry():
    assert label("lif") == "LIF" and label("ilif-mpiu") == "ILIF-MPIU"
    assert label("ilif+detach-reset") == "ILIF+detach-reset"
    with pytest.raises(ValueError, match="registered neurons: .*lif"):
        label("hh")


# firing after training by (neuron, γ) and seed, and at step 0, for the fake summaries
FIRING = {("lif", 0.25): (0.10, 0.11, 0.13), ("lif", 1.0): (0.20, 0.21, 0.22),
          ("lif", 4.0): (0.30, 0.33, 0.32), ("ilif", 0.25): (0.05, 0.06, 0.05),
          ("ilif", 1.0): (0.06, 0.07, 0.08), ("ilif", 4.0): (0.07, 0.09, 0.08)}
STEP0 = {"lif": 0.17, "ilif": 0.16}
LAYERS = ("features.0.neuron", "features.2.neuron")


def fake_cell(neuron: str, width: float, seed: int, arm_shift: float = 0.0) -> dict:
    firing = FIRING[(neuron, width)][seed - 1] + arm_shift
    steps = [140 * e for e in range(1, 4)]
    return {
        "cell": f"{neuron}_rectangle_w{width:g}_s{seed}", "neuron": neuron, "variant": "",
        "surrogate": "rectangle", "width": width, "seed": seed, "status": "done", "epochs": 3,
        "sgd_steps": 420, "test_acc": 0.4 + 0.01 * seed, "train_acc": 0.5, "firing_rate": firing,
        "step0_firing_rate": STEP0[neuron], "step0_open_rate": 0.06 * width,
        "step0_overactive_share": 0.1, "open_rate": 0.05 * width, "sops": 2.0e7,
        "snn_energy_pj": 3.0e7, "loihi_snn_energy_pj": 5.0e8, "ann_energy_pj": 4.7e7,
        "synaptic_energy_pj": 2.5e7, "neuron_energy_pj": 5.0e6, "loihi_synaptic_energy_pj": 4e8,
        "loihi_neuron_energy_pj": 9e7, "loihi_spike_energy_pj": 1e7, "seconds": 100.0,
        "layers": {name: {"firing_rate": firing} for name in LAYERS},
        "step0": {"bn_train": {"firing_rate": STEP0[neuron], "images": 512},
                  "bn_eval": {"firing_rate": 0.07, "images": 512}},
        "trajectory": [{"epoch": e + 1, "sgd_steps": s,
                        "weight_grad_nonzero_share": {"conv": 0.99},
                        "weight_update_ratio": {"conv": 0.02},
                        "val_spikes": {"firing_rate": firing + 0.01 * (2 - e),
                                       "open_rate": 0.05, "overactive_share": 0.1,
                                       "layer_firing_rate": {n: firing for n in LAYERS}}}
                       for e, s in enumerate(steps)],
    }


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "runs"
    for arm, shift in (("primary-sgd", 0.0), ("primary-adamw", 0.001)):
        for seed in (1, 2, 3):
            rows = [fake_cell(n, w, seed, shift) for n in ("lif", "ilif")
                    for w in (0.25, 1.0, 4.0)]
            write_results(root / arm / f"s{seed}", rows, {})
    failed = {"cell": "ilif+detach-reset_rectangle_w1_s1", "status": "failed: RuntimeError"}
    write_results(root / "gradient-paths" / "s1", [failed], {})
    return root


def test_endpoints_paired_by_seed_against_hand_values(fake_root, tmp_path):
    export(fake_root, tmp_path / "data")
    results = load(tmp_path / "data")
    cells = results.part("primary-sgd")
    e1, e2, e3 = ENDPOINTS
    # the validation firing after the last epoch is the fake's firing (offset 0 at epoch 3)
    assert endpoint_values(e1, cells) == pytest.approx({1: 0.20, 2: 0.22, 3: 0.19})
    # E2 = (LIF 4 − LIF 0.25) − (ILIF 4 − ILIF 0.25): 0.20 − 0.02, 0.22 − 0.03, 0.19 − 0.03
    assert endpoint_values(e2, cells) == pytest.approx({1: 0.18, 2: 0.19, 3: 0.16})
    # E3 = (ILIF 1 − 0.16) − (LIF 1 − 0.17): −0.10 − 0.03, −0.09 − 0.04, −0.08 − 0.05
    assert endpoint_values(e3, cells) == pytest.approx({1: -0.13, 2: -0.13, 3: -0.13})
    out = analyse(results)
    assert [(r.endpoint.name, r.arm) for r in out] == [
        (e, arm) for arm in ("primary-sgd", "primary-adamw") for e in ("E1", "E2", "E3")]
    first = out[0]
    assert first.test.n == 3 and first.test.mean == pytest.approx(0.61 / 3)
    # s_d of (0.20, 0.22, 0.19): √(((−0.00333)² + 0.01667² + (−0.01333)²) / 2) = 0.015275
    assert first.test.sd == pytest.approx(0.0152753, rel=1e-5)
    # MDE ≤ 0.01 at that s_d (α = 0.05/6, power 0.8): (t_(0.99583, n−1) + t_(0.8, n−1))·s_d/√n
    # is (2.8247 + 0.8538)·0.0152753/√31 = 0.01009 at n = 31, (2.8183 + 0.8534)·…/√32 = 0.00991
    assert first.pairs_for_target() == 32
    assert out[2].pairs_for_target() == 2  # s_d = 0: the smallest test already detects
    # E3 is constant over seeds (p = 0); Holm multiplies the smallest p by 6
    assert out[2].test.p == 0.0 and out[2].p_holm == 0.0
    ps = sorted(r.test.p for r in out)
    assert min(r.p_holm for r in out if r.test.p == ps[-1]) >= ps[-1]
    # the arms are the same up to a shift that cancels in every difference
    assert out[3].test.mean == pytest.approx(first.test.mean)


def test_results_page_from_the_summaries_byte_for_byte(fake_root, tmp_path, monkeypatch):
    """``python -m ilif.study --write-only`` from the exported summaries: the same page twice."""
    monkeypatch.chdir(REPO)  # the configs are read from the repository
    data = tmp_path / "data"
    written = export(fake_root, data)
    assert {p.parent.name for p in written} == {"primary-sgd", "primary-adamw", "gradient-paths"}
    summary = json.loads((data / "primary-sgd" / "s1.json").read_text())["cells"][0]
    assert summary["val_firing_rate"] == pytest.approx(0.10) and "run_dir" not in summary
    doc = tmp_path / "docs" / "results.md"
    figures = tmp_path / "docs" / "figures" / "results"
    figures.mkdir(parents=True)
    (figures / "old_layout.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # shown by no page any more
    args = ["--data", str(data), "--doc", str(doc), "--figures", str(figures), "--write-only"]
    assert main(args) == 0
    assert not (figures / "old_layout.png").exists()
    text = doc.read_bytes()
    assert write_results_doc(data, doc, figures) == doc and doc.read_bytes() == text
    page = text.decode()
    # the pre-registration comes before any result
    assert page.index("## Primary endpoints (pre-registered)") < page.index("## Primary results")
    assert "Status: 36 of the 72 planned primary runs are finished." in page
    assert re.search(r"CIFAR-10 subset .*`primary-sgd`.*Each run: 840 SGD steps", page)
    # E1 in the SGD arm: mean 0.2033, n = 3, with its CI and Holm p
    assert "| E1 | SGD (the paper's recipe) | 3 | +0.2033 |" in page
    e1_row = next(line for line in page.splitlines() if line.startswith("| E1 | SGD"))
    assert e1_row.split(" | ")[-2] == "32"  # pairs for MDE ≤ 0.01 (hand-derived in the test above)
    assert "planned: E1 (SGD) 32, E2 (SGD)" in page
    assert "--parts primary-adamw,primary-sgd --seeds 7" in page
    # step 0 beside trained: LIF at γ = 0.25, step 0 0.17, trained 0.1133 ± 0.0153
    assert "| LIF | 0.25 | 3 | 0.1700 ± 0.0000 | 0.0700 ± 0.0000 | 0.1133 ± 0.0153 |" in page
    assert "Δr* = ΔE / (fan-out · E_AC)" in page and "| `cifar-small` | loihi |" in page
    for word in ("agrees", "disagrees", "beyond seed noise"):
        assert word not in page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert any("firing_vs_step" in link for link in links)
    for link in links:
        path = (doc.parent / link).resolve()
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    assert len(list(figures.glob("*.png"))) == len(set(links))


def test_the_committed_page_is_what_the_committed_summaries_give(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    doc = tmp_path / "results.md"  # the figures where docs/results.md has them, relative to it
    write_results_doc(REPO / "docs/results-data", doc, tmp_path / "figures" / "results")
    committed = (REPO / "docs/results.md").read_text()
    assert doc.read_text() == committed
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", committed):  # each figure exists
        assert (REPO / "docs" / link).is_file() and (tmp_path / link).is_file(), link


def test_an_empty_study_is_pending_not_an_error(tmp_path):
    assert load(tmp_path / "none") == Results({}, {})


def test_nmnist_tree_links_the_real_recordings(shared_data, tmp_path):
    root = nmnist_tree(shared_data, tmp_path / "nmnist")
    train = sorted(root.glob("Train/*/*.bin"))
    test = sorted(root.glob("Test/*/*.bin"))
    assert len(train) == 10 and len(test) == 10
    assert {p.parent.name for p in train} == {str(d) for d in range(10)}
    assert all(p.is_symlink() and p.resolve().suffix == ".bs2" for p in train + test)
    assert (root / "Train" / "1" / "00004.bin").exists()  # id 4 has label 1 (SOURCES.md)
    nmnist_tree(shared_data, root)  # again: nothing to do, no error



def test_a_verdict_waits_for_the_planned_pairs(fake_root, tmp_path):
    """E3 has p = 0 with 3 pairs, yet the page states no verdict before the planned 6 pairs."""
    from ilif.study.sections import _verdict

    export(fake_root, tmp_path / "data")
    e3 = analyse(load(tmp_path / "data"))[2]
    assert e3.test.n == 3 and e3.p_holm == 0.0
    assert _verdict(e3) == "interim (3 of 6 pairs): no verdict yet"
    complete = replace(e3, test=replace(e3.test, n=6))
    assert _verdict(complete) == "differs from 0 (Holm p < 0.05)"
    assert _verdict(replace(complete, p_holm=0.2)).startswith("no effect detected")


def test_an_endpoint_that_differs_is_read_out_in_its_direction(fake_root, tmp_path):
    from ilif.study.sections import reading

    export(fake_root, tmp_path / "data")
    out = analyse(load(tmp_path / "data"))
    e1, e3 = out[0], out[5]  # E1 in the SGD arm (mean +0.2033), E3 in the AdamW arm (−0.13)
    assert reading(e1).startswith("E1, SGD: LIF fires more at γ = 4 than at γ = 0.25, by 0.2033 [")
    down = reading(replace(e3, test=replace(e3.test, mean=-0.02, ci_low=-0.03, ci_high=-0.01)))
    assert down == ("E3, AdamW: from step 0 to the last epoch, ILIF's firing moves down relative "
                    "to LIF's, by 0.0200 [0.0100, 0.0300] in firing rate.")


def test_gradient_paths_sit_beside_full_ilif_and_lif_with_their_lengths(fake_root, tmp_path):
    """The cut-path variants (3 epochs here as in the plan's part) and, from the SGD arm at
    γ = 1, full ILIF and LIF, each row naming its own training length."""
    from ilif.study.sections import paths_section

    rows = []
    for variant, grad in (("", 0.003), ("detach-reset", 0.002), ("detach-inhibition", 0.004)):
        cell = fake_cell("ilif", 1.0, 1)
        name = f"ilif+{variant}" if variant else "ilif"
        cell.update(cell=f"{name}_rectangle_w1_s1", neuron=name, variant=variant,
                    grad_norm_first_layer=grad, sgd_steps=210)
        rows.append(cell)
    write_results(fake_root / "gradient-paths" / "s1", rows, {})
    export(fake_root, tmp_path / "data")
    text = "\n".join(paths_section(load(tmp_path / "data")))
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]  # no header
    assert [line.split(" | ")[0:3] for line in table] == [
        ["| LIF", "420", "3"], ["| ILIF", "420", "3"], ["| ILIF", "210", "1"],
        ["| ILIF+detach-reset", "210", "1"], ["| ILIF+detach-inhibition", "210", "1"]]
    # LIF at γ = 1 over seeds 1–3: firing 0.20, 0.21, 0.22 and test accuracy 41, 42, 43 %
    assert table[0].split(" | ")[3:5] == ["42.00 ± 1.00", "0.2100 ± 0.0100"]
    assert table[4].split(" | ")[5].startswith("0.00400")


def test_best_epoch_is_the_first_of_the_highest_validation_accuracy():
    """The trainer keeps a new best checkpoint only on a strict improvement, so a tie keeps the
    earlier epoch; the page counts the runs whose best is their last epoch."""
    from ilif.study.load import best_epoch
    from ilif.study.sections import selection_note

    def run(accuracies: list[float]) -> dict:
        return {"epochs": len(accuracies), "trajectory": [
            {"epoch": e + 1, "val_accuracy": a} for e, a in enumerate(accuracies)]}

    assert best_epoch(run([0.5, 0.6, 0.6])) == 2
    assert best_epoch(run([0.5, 0.4, 0.7])) == 3
    assert best_epoch({"epochs": 3}) is None
    note = selection_note([run([0.5, 0.6, 0.6]), run([0.5, 0.4, 0.7]), run([0.1, 0.2])])
    assert "the last epoch's in 2 of the 3 runs" in note


def test_seeds_added_by_the_sample_size_rule_are_counted_apart(fake_root, tmp_path):
    from ilif.study.sections import header

    rows = []
    for neuron in ("lif", "ilif"):
        for width in (0.25, 1.0, 4.0):
            cell = fake_cell(neuron, width, 1)
            cell.update(seed=7, cell=f"{neuron}_rectangle_w{width:g}_s7")
            rows.append(cell)
    write_results(fake_root / "primary-sgd" / "s7", rows, {})
    export(fake_root, tmp_path / "data")
    results = load(tmp_path / "data")
    assert ("Status: 36 of the 72 planned primary runs are finished; 6 more runs with the added "
            "seeds 7 (the sample-size rule below).") in header(results)
    e1 = analyse(results)[0]
    assert e1.test.n == 4 and sorted(e1.values) == [1, 2, 3, 7]  # the added pair is analysed
