"""The package's import graph: no cycles, and layers that point one way.

Every ``import`` and ``from ... import`` in every module counts, also those inside functions.
An import of a name from a package counts as an import of that submodule when one has the name.

    gd_torch.core        the lesson and the training core: imports nothing else of gd_torch
    gd_torch.dashboard   TensorBoard: the core and the analysis figures
    gd_torch.analysis    seeing inside: the core
    gd_torch.tools       sweep, bench, reproduce, predict: anything below the command line
    gd_torch.api, cli    the top
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gd_torch"
LAYERS = {  # what each part may import from gd_torch
    "gd_torch.core": {"gd_torch.core"},
    "gd_torch.analysis": {"gd_torch.core", "gd_torch.analysis"},
    "gd_torch.dashboard": {"gd_torch.core", "gd_torch.analysis", "gd_torch.dashboard"},
    "gd_torch.tools": {
        "gd_torch.core",
        "gd_torch.analysis",
        "gd_torch.dashboard",
        "gd_torch.tools",
        "gd_torch.api",
    },
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The gd_torch modules that ``name`` imports, anywhere in its code."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of the graph as [a, b, ..., a], or [] when it has none (depth-first search)."""
    finished, path = set(), []

    def visit(node: str) -> list[str]:
        path.append(node)
        for neighbour in sorted(graph[node]):
            if neighbour in path:
                return path[path.index(neighbour) :] + [neighbour]
            if neighbour not in finished and (cycle := visit(neighbour)):
                return cycle
        finished.add(path.pop())
        return []

    for node in sorted(graph):
        if node not in finished and (cycle := visit(node)):
            return cycle
    return []


def test_the_graph_sees_imports_inside_functions():
    assert (
        "gd_torch.analysis.outputs" in GRAPH["gd_torch.dashboard.tensorboard"]
    )  # imported in TrainingLog.images
    assert GRAPH["gd_torch.core.loop"] >= {
        "gd_torch.core.compiled",
        "gd_torch.core.engines",
        "gd_torch.core.run",
    }


def test_the_cycle_finder_finds_a_cycle_through_several_modules():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert not cycle, " -> ".join(cycle)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, imported in GRAPH.items():
        layer = next(
            (layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None
        )
        if layer is None:
            continue
        allowed = LAYERS[layer]
        for target in imported:
            if target != "gd_torch" and not any(
                target == a or target.startswith(a + ".") for a in allowed
            ):
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_the_core_imports_nothing_from_the_tools():
    """The issue's rule, stated directly: model, cost, manual twin, engines, data, loop and
    checkpoints import nothing from sweep, bench, reproduce, analysis or the TensorBoard
    drawing."""
    core = [module for module in GRAPH if module.startswith("gd_torch.core")]
    assert len(core) >= 15
    for module in core:
        assert all(target.startswith("gd_torch.core") for target in GRAPH[module]), (
            module,
            GRAPH[module],
        )
