"""The import structure of learnscope: no cycles, and layers that import only downward.

Every `import` in `src/learnscope` counts, function-level ones included (a function-level import
that closes a cycle is still a cycle, only a later one). The rules are those of
docs/architecture.md; a failure names the modules and the import to move.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"


def module_files() -> dict[str, Path]:
    modules = {}
    for file in (SOURCE / "learnscope").rglob("*.py"):
        parts = list(file.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    return modules


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported learnscope module: line of the first such import}}."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {}
    for name, file in modules.items():
        package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (".".join(package[: len(package) - node.level + 1] + [node.module or ""])
                        .rstrip(".") if node.level else node.module or "")
                # `from package import submodule` imports the submodule, not only the package
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def describe(graph, component: list[str]) -> str:
    inside = set(component)
    return "; ".join(f"{a} imports {b} (line {graph[a][b]})"
                     for a in component for b in sorted(graph[a]) if b in inside)


def test_the_walker_finds_a_cycle_closed_by_a_function_level_import(tmp_path, monkeypatch):
    package = tmp_path / "learnscope"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from learnscope import b\n")
    (package / "b.py").write_text("def late():\n    from learnscope.a import thing\n")
    (package / "c.py").write_text("import learnscope.a\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", tmp_path)
    assert cycles(import_graph()) == [["learnscope.a", "learnscope.b"]]


def test_no_import_cycles_function_level_imports_included():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(describe(graph, c) for c in found)


def imports_of(graph, prefixes: tuple[str, ...]) -> dict[str, dict[str, int]]:
    return {name: edges for name, edges in graph.items()
            if any(name == p or name.startswith(p + ".") for p in prefixes)}


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


LEAVES = ("learnscope.registry", "learnscope.diagnostics", "learnscope.threads",
          "learnscope.defaults", "learnscope._version", "learnscope.schedules",
          "learnscope.store.layout")
CORE = ("learnscope.engine", "learnscope.patterns.measures", "learnscope.patterns.counts",
        "learnscope.patterns.device_counts",
        "learnscope.patterns.keys", "learnscope.separation.moments", "learnscope.separation.law",
        "learnscope.separation.layerwise")
VIEWS = ("learnscope.viz", "learnscope.dashboard", "learnscope.exports")
PROBES = ("learnscope.probe", "learnscope.patterns.activation_patterns",
          "learnscope.trajectory.weights_probe", "learnscope.separation.layerwise",
          "learnscope.scope")

# (who, what it must not import, what it may import all the same, why)
LAYER_RULES = [
    (LEAVES, ("learnscope",), LEAVES, "the leaves import nothing of learnscope but each other"),
    (CORE, ("learnscope.models", "learnscope.store", "learnscope.progress", "learnscope.train",
            "learnscope.scope", "learnscope.experiments", "learnscope.cli") + VIEWS, (),
     "measures, accumulators and the measurement pass know no models, storage or display"),
    (PROBES, ("learnscope.train", "learnscope.experiments", "learnscope.cli") + VIEWS, (),
     "probes and Scope know no trainer, experiment or view"),
    (("learnscope.train",), ("learnscope.store", "learnscope.cli") + VIEWS,
     ("learnscope.store.layout",), "the trainer talks to the store only through Scope"),
    (VIEWS, ("learnscope.train", "learnscope.engine", "learnscope.scope",
             "learnscope.patterns.activation_patterns", "learnscope.separation.layerwise",
             "learnscope.trajectory.weights_probe", "learnscope.experiments"), (),
     "views read the store; they do not train or measure"),
]


@pytest.mark.parametrize("who,forbidden,allowed,why", LAYER_RULES,
                         ids=["leaves", "core", "probes", "trainer", "views"])
def test_layers_import_only_downward(who, forbidden, allowed, why):
    graph = import_graph()
    broken = [f"{name} imports {target} (line {line})"
              for name, edges in imports_of(graph, who).items()
              for target, line in edges.items()
              if under(target, forbidden) and not under(target, allowed)]
    assert not broken, f"{why}: " + "; ".join(broken)


def test_a_schedule_loads_no_torch():
    """`ls.every(5)` is a schedule, plain Python: writing one must not load torch."""
    code = ("import sys, learnscope as ls; s = ls.every(5) | ls.at([0, 3]); "
            "print([k for k in range(8) if s(k)], 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[0,", "3,", "5]", "False"], result.stdout
