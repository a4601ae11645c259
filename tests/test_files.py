"""ilif.files: atomic writes and JSON with numpy/torch values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ilif.files import read_jsonl, write_json, write_jsonl, write_text


def test_json_takes_numpy_and_torch_scalars_and_writes_nan_as_null(tmp_path: Path) -> None:
    value = {"f32": np.float32("nan"), "t": torch.tensor(1.5), "tnan": torch.tensor(float("inf")),
             "i": np.int64(3), "rows": [np.float64("nan"), 2.0], "path": tmp_path}
    write_json(tmp_path / "a.json", value)
    assert json.loads((tmp_path / "a.json").read_text()) == {
        "f32": None, "t": 1.5, "tnan": None, "i": 3, "rows": [None, 2.0], "path": str(tmp_path)}
    write_jsonl(tmp_path / "b.jsonl", [{"x": np.float32(0.25)}, {"x": torch.tensor(float("nan"))}])
    assert read_jsonl(tmp_path / "b.jsonl") == [{"x": 0.25}, {"x": None}]


def test_unknown_values_are_refused_and_the_old_file_stays(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    write_text(target, "old\n")
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(target, {"x": object()})
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left behind
