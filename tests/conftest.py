"""Shared fixtures of the test suite.

- ``shared_data``: the real data folder ``../shared/data`` (skips with the reason when absent).
- ``generator``: a seeded ``torch.Generator`` for reproducible random inputs.
- ``float64_default``: runs a test with ``torch.float64`` as the default dtype (restored after).
- A hypothesis profile without per-example deadlines (timings on shared machines are noisy).

``tests/`` is put on ``sys.path`` so test modules can ``import reference`` (the float64 reference
neurons) under any pytest import mode.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DATA = Path(os.environ.get("ILIF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass
else:
    settings.register_profile(
        "ilif", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ilif"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real data folder (``../shared/data`` from the repository root, or
    ``$ILIF_SHARED_DATA``); the test is skipped, saying where it looked, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data folder not found at {SHARED_DATA} (set ILIF_SHARED_DATA to its path)"
        )
    return SHARED_DATA


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with 1234 (the project's seed)."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def float64_default() -> Iterator[None]:
    """Make float64 the default dtype for the test (new parameters and tensors), then restore."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
