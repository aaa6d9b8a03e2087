"""DESIGN.md's import rules: devices and the coordinator never load TensorFlow."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", [
    "device_runtime.fleet.emulator, device_runtime.cli, device_runtime.device, device_runtime.trainer",
    "coordinator.http.app, coordinator.cli, coordinator.service",
    "protocol.codec, protocol.tflite_file, protocol.eligibility, protocol.messages",
    "simulation.run, simulation.cli, simulation.population",
])
def test_no_tensorflow_import(modules):
    code = f"import sys, {modules}; import fedge.cli; fedge.cli.build_parser(); " \
           "bad = [m for m in ('tensorflow', 'keras', 'model_export.exporter') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


PACKAGES = ("protocol", "coordinator", "device_runtime", "model_export", "fedge", "simulation")


def _module_imports(deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports when it is imported (module level, including
    `if TYPE_CHECKING:` blocks); with ``deferred``, also the imports inside functions."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        tree = ast.parse(path.read_text())
        if deferred:
            nodes = list(ast.walk(tree))
        else:
            nodes, stack = [], list(tree.body)
            while stack:
                node = stack.pop()
                if isinstance(node, (ast.If, ast.Try)):
                    stack.extend(node.body + node.orelse + getattr(node, "finalbody", []) +
                                 [h for handler in getattr(node, "handlers", []) for h in handler.body])
                else:
                    nodes.append(node)
        for node in nodes:
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:
                        edges.add(sub)
                    elif node.module in modules:
                        edges.add(node.module)
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("deferred", [False, True], ids=["module-level", "function-level-too"])
def test_no_import_cycles(deferred):
    """No circle, not even through an import inside a function (which only hides one)."""
    graph = _module_imports(deferred)
    assert len(graph) > 100  # every package was read
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_task_registry_imports_none_of_the_parts():
    graph = _module_imports()
    seen, todo = set(), ["coordinator.tasks.registry"]
    while todo:
        for m in graph[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    parts = {"coordinator.gateway.gateway", "coordinator.rounds.driver", "coordinator.admin.operations",
             "coordinator.service", "coordinator.http.app", "coordinator.http.handlers"}
    assert not seen & parts, seen & parts
