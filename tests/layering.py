"""The import graph of the ``ilif`` sources, read with ``ast`` (every import statement counts:
module level, inside functions, under ``if TYPE_CHECKING:``), and the layering rule of the README.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ilif"
README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Edge:
    importer: str  # dotted module name, e.g. ilif.train.loop
    target: str  # dotted module name (a package means its __init__)
    names: tuple[str, ...]  # the names taken from the target (from-imports)
    line: int


def module_name(path: Path) -> str:
    parts = ["ilif", *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def _is_module(name: str, known: dict[str, Path]) -> bool:
    return name in known


def edges() -> list[Edge]:
    """Every import of an ``ilif`` module by an ``ilif`` module."""
    known = modules()
    found: list[Edge] = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "ilif" or alias.name.startswith("ilif."):
                        found.append(Edge(name, alias.name, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if not (source == "ilif" or source.startswith("ilif.")):
                    continue
                plain: list[str] = []
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if _is_module(sub, known):  # `from ilif.data import events`: the module
                        found.append(Edge(name, sub, (), node.lineno))
                    else:
                        plain.append(alias.name)
                if plain:
                    found.append(Edge(name, source, tuple(plain), node.lineno))
    return found


def package_of(module: str) -> str:
    """The layer a module belongs to: ``ilif.train.loop`` -> ``train``, ``ilif.files`` ->
    ``files``, ``ilif`` (the top-level ``__init__``) -> ``ilif``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ilif"


def read_layers(readme: Path = README) -> dict[str, set[str]]:
    """The README's layering lines, ``package: what it may import`` (``-``: nothing), between
    the ``<!-- layers -->`` and ``<!-- /layers -->`` markers."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"<!-- layers -->(.*?)<!-- /layers -->", text, re.S)
    if match is None:
        raise AssertionError(f"{readme}: no <!-- layers --> ... <!-- /layers --> block")
    layers: dict[str, set[str]] = {}
    for line in match.group(1).splitlines():
        line = line.strip().strip("`")
        if ":" not in line or line.startswith("```"):
            continue
        package, _, rest = line.partition(":")
        rest = rest.split("#")[0].strip()
        allowed = set() if rest in ("-", "") else {p.strip() for p in rest.split(",")}
        layers[package.strip()] = allowed
    return layers


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed ``graph`` (as a list of nodes, first repeated last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None
