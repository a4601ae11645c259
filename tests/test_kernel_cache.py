"""The numba cache guard of the fused CPU kernels, the note on first compilation, and the
one-way layering between ``ilif.kernels`` and ``ilif.neurons``.

The guard (``ilif.kernels.numba_ops.cache``) caches in a directory named after a hash of the
package's sources. The test runs it on a tiny package of its own (a cached kernel that inlines a
helper from another module), as the real kernels take minutes to compile.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ilif.kernels.numba_ops import cache as guard
from ilif.kernels.numba_ops.variants import ensure_variant

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

_HELPER = "from numba import njit\n\n\n@njit(inline='always')\ndef value():\n    return {}\n"
_KERNEL = "from numba import njit\n\nfrom tinypkg.helper import value\n\n\n" \
          "@njit(cache=True)\ndef kernel():\n    return value()\n"
_RUN_GUARDED = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ilif.kernels.numba_ops.cache import numba_cache_dir
    with numba_cache_dir(Path(sys.argv[1]) / "tinypkg"):
        from tinypkg.kernel import kernel
    print(kernel())
""")
_RUN_PLAIN = "import os\nfrom tinypkg.kernel import kernel\nprint(kernel())\n"


def _run(code: str, pkg_root: Path, cache_root: Path) -> int:
    env = {**os.environ, "ILIF_CACHE_DIR": str(cache_root), "NUMBA_CACHE_DIR": "",
           "PYTHONPATH": os.pathsep.join([str(pkg_root), str(SRC)])}
    out = subprocess.run([sys.executable, "-c", code, str(pkg_root)], env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    return int(out.stdout.strip().splitlines()[-1])


def _write_package(root: Path, helper_value: int) -> None:
    pkg = root / "tinypkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernel.py").write_text(_KERNEL)
    (pkg / "helper.py").write_text(_HELPER.format(helper_value))


@pytest.mark.slow  # four processes that import torch and compile with numba
def test_a_changed_helper_module_invalidates_the_cached_kernel(tmp_path: Path) -> None:
    """Without the guard numba reuses the cached kernel after its inlined helper changed (the
    stale value); with it the change starts a new cache directory and the kernel compiles again."""
    cache_root = tmp_path / "cache"
    for code, name in ((_RUN_PLAIN, "plain"), (_RUN_GUARDED, "guarded")):
        root = tmp_path / name
        root.mkdir()
        _write_package(root, 1)
        assert _run(code, root, cache_root) == 1  # compiled and cached
        _write_package(root, 2)  # only the helper changes
        got = _run(code, root, cache_root)
        assert got == (1 if name == "plain" else 2)  # plain numba: stale machine code
    kernels = f"numba-{guard.source_hash(guard.PACKAGE_DIR)}"  # ilif's own, made on import
    dirs = {p.name for p in cache_root.iterdir()} - {kernels}
    assert len(dirs) == 2 and all(d.startswith("numba-") for d in dirs)  # one per source version


def test_cache_dir_follows_the_environment_and_the_sources(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    monkeypatch.setenv("ILIF_CACHE_DIR", str(tmp_path / "here"))
    first = guard.source_hash(pkg)
    assert guard.cache_root() == tmp_path / "here"
    (pkg / "b.py").write_text("y = 2\n")
    assert guard.source_hash(pkg) != first
    monkeypatch.delenv("ILIF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert guard.cache_root() == tmp_path / "xdg" / "ilif"


def test_the_note_is_printed_once_per_variant(tmp_path: Path) -> None:
    """One line while a variant compiles the first time; nothing once it is cached."""
    calls, stream = [], io.StringIO()
    for _ in range(2):
        ensure_variant("ilif-float32", "ILIF float32", 60, lambda: calls.append(1), tmp_path,
                       stream)
    lines = stream.getvalue().splitlines()
    assert calls == [1, 1] and len(lines) == 1
    assert lines[0].startswith("ilif: compiling the fused CPU kernel for ILIF float32, once")
    assert str(tmp_path) in lines[0] and "about 60 s" in lines[0]


def test_only_the_variants_run_are_compiled(tmp_path: Path) -> None:
    """An ILIF and LIF run (what ``ilif demo`` trains) compiles the ILIF family in float32
    only: the CLIF kernels and the float64 ones stay uncompiled."""
    code = textwrap.dedent("""
        import torch
        from ilif.neurons import ILIF, LIF
        from ilif.kernels.numba_ops import drivers, variants
        x = torch.randn(3, 200, requires_grad=True)
        for cls in (ILIF, LIF):
            torch.autograd.grad(cls()(x).sum(), x)
        print(sorted(variants._READY))
        print(len(drivers.clif_forward.overloads), len(drivers.clif_backward.overloads))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, check=True, timeout=600)
    ready, clif = out.stdout.strip().splitlines()[-2:]
    assert ready == "[('ilif', 'float32')]"
    assert clif == "0 0"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_kernels_import_nothing_from_the_neurons() -> None:
    """The kernels take a FusedForm and tensors: no import of ``ilif.neurons`` anywhere in
    ``ilif.kernels``, not even inside a function."""
    files = sorted((SRC / "ilif" / "kernels").rglob("*.py"))
    assert len(files) > 10
    for path in files:
        bad = {m for m in _imports(path) if m == "ilif.neurons" or m.startswith("ilif.neurons.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
