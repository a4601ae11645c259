"""One-way layers: the imports of every ``ilif`` module, parsed with ``ast`` (function-level and
``if TYPE_CHECKING:`` imports included), against the layering lines of the README."""

from __future__ import annotations

from collections import defaultdict

import pytest
from layering import README, edges, find_cycle, modules, package_of, read_layers

LAYERS = read_layers()
EDGES = edges()
PACKAGES = sorted({package_of(name) for name in modules()})


def imports_between_packages() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> ["module:line", ...]."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for edge in EDGES:
        a, b = package_of(edge.importer), package_of(edge.target)
        if a != b:
            out[a][b].append(f"{edge.importer}:{edge.line}")
    return out


def test_the_parser_sees_function_level_and_type_checking_imports(tmp_path) -> None:
    """The graph holds the imports inside functions (the kind a cycle hides in)."""
    inner = [e for e in EDGES if e.importer == "ilif.cli" and e.target == "ilif.version"]
    assert inner, "ilif.cli imports ilif.version inside build_parser()"
    from layering import find_cycle as fc

    assert fc({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert fc({"a": {"b"}, "b": set()}) is None


def test_every_package_has_a_layering_line_and_the_layers_form_no_cycle() -> None:
    missing = [p for p in PACKAGES if p not in LAYERS]
    assert not missing, f"{README.name}: no layering line for {missing}"
    unknown = {p for allowed in LAYERS.values() for p in allowed} - set(PACKAGES)
    assert not unknown, f"{README.name}: the layering lines name unknown packages {unknown}"
    assert find_cycle(LAYERS) is None, f"the README's layers have a cycle: {find_cycle(LAYERS)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_packages_of_its_layering_line(package: str) -> None:
    allowed = LAYERS.get(package, set())
    wrong = {
        target: sites for target, sites in imports_between_packages()[package].items()
        if target not in allowed
    }
    assert not wrong, (
        f"ilif.{package} may import only {sorted(allowed) or 'nothing'} (README layers), but "
        f"imports: " + "; ".join(f"{t} at {', '.join(s)}" for t, s in sorted(wrong.items()))
    )


def test_no_import_cycle_between_packages() -> None:
    graph = {a: set(targets) for a, targets in imports_between_packages().items()}
    assert find_cycle(graph) is None, f"import cycle between packages: {find_cycle(graph)}"


def test_no_module_cycle_inside_a_package() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in EDGES:
        if package_of(edge.importer) == package_of(edge.target) != "ilif":
            graph[edge.importer].add(edge.target)
    assert find_cycle(graph) is None, f"module import cycle: {find_cycle(graph)}"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_imported_across_packages() -> None:
    bad = []
    for edge in EDGES:
        if package_of(edge.importer) == package_of(edge.target):
            continue
        parts = edge.target.split(".")
        names = [n for n in (*parts, *edge.names) if _private(n)]
        if names:
            bad.append(f"{edge.importer}:{edge.line} imports {', '.join(names)} "
                       f"from {edge.target}")
    assert not bad, "private names imported across packages: " + "; ".join(bad)
