"""The layers and their one-way dependencies (README "Architecture"), checked by walking every
import of the project's packages with `ast` — module-level and inside functions alike."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("codec", "components", "pipelines", "serving", "cli")
# What each layer may import, besides itself and third-party packages.
ALLOWED = {"codec": set(), "serving": set(), "components": {"codec"},
           "pipelines": {"components", "codec"}, "cli": {"pipelines", "components", "codec",
                                                         "serving"}}
FORBIDDEN_THIRD_PARTY = {"codec": {"tfx", "apache_beam", "argparse", "grpc"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules and third-party top-level packages `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:   # `from pkg import module` imports the module
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_layers_import_only_downwards():
    violations = []
    for module, imports in _graph().items():
        layer = module.split(".")[0]
        for imported in imports:
            top = imported.split(".")[0]
            if top in PACKAGES and top != layer and top not in ALLOWED[layer]:
                violations.append(f"{module} imports {imported}")
            if top in FORBIDDEN_THIRD_PARTY.get(layer, ()):
                violations.append(f"{module} imports {imported}")
    assert not violations, "\n".join(sorted(violations))


def test_no_import_cycles():
    graph = _graph()
    edges = {m: {i for i in imports if i in graph and i != m} for m, imports in graph.items()}
    # A package's __init__ is imported with each of its modules; only real edges count.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
