"""Helpers shared by the tests of ilif.data (imported by tests/test_data_*.py); the real-data
folder comes from the ``shared_data`` fixture of conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest


def spikingjelly_functions(*names: str, module: str = "utils") -> dict:
    """Functions of SpikingJelly's ``datasets/<module>.py`` (the peer oracle), compiled on their
    own with the module's constant assignments: the module itself imports torchvision, which does
    not load beside the CPU torch wheel."""
    import ast
    import importlib.util
    import math
    import struct
    from typing import Optional, Union

    import numpy as np

    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("spikingjelly (the peer oracle) is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / f"{module}.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    chosen = [node for node in tree.body
              if isinstance(node, ast.FunctionDef) and node.name in names]
    if {node.name for node in chosen} != set(names):
        chosen = []
    constants = [node for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)]
    if not chosen:
        pytest.skip(f"this spikingjelly version lacks {set(names)} in {source}")
    namespace = {"np": np, "struct": struct, "math": math, "Path": Path, "Union": Union,
                 "Optional": Optional}
    code = ast.Module(body=constants + chosen, type_ignores=[])
    exec(compile(code, str(source), "exec"), namespace)
    return {name: namespace[name] for name in names}
