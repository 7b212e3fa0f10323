"""Print each package's import graph and check the two rules of docs/architecture.md that imports show.

    python scripts/import_graph.py                    # every package of the repository
    python scripts/import_graph.py genai_retrieval    # one package

For each package: every module and the modules of the same package it imports (``TYPE_CHECKING``
imports included: they are dependencies all the same), the import cycles, and the domain modules that
import grpc or generated protobuf. Exits 1 when either list is not empty. ``make lint`` checks the same
rules with import-linter (``.importlinter``); this script is the readable picture, before and after.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted(ROOT.glob("libs/*/src")), ROOT / "gateway/src", *sorted(ROOT.glob("services/*/src"))]
# Modules of a service that may speak protobuf/grpc; every other module of a service is domain.
ADAPTERS = {"__main__", "servicer", "convert", "clients"}
FOREIGN = ("grpc", "genai.", "google.protobuf", "google.rpc", "grpc_status", "grpc_health")


def _packages() -> dict[str, Path]:
    return {p.name: p for src in SOURCES for p in src.iterdir() if (p / "__init__.py").exists()}


def _module_name(package: str, root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def graph(package: str, root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> same-package modules it imports, module -> foreign grpc/protobuf imports)."""
    modules = {_module_name(package, root, p): p for p in sorted(root.rglob("*.py"))}
    edges: dict[str, set[str]] = {}
    foreign: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = _imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
        # An ancestor package is imported by any import of its submodules anyway: not an edge of its own.
        edges[name] = {m for m in imported if m in modules and m != name and not name.startswith(m + ".")}
        foreign[name] = {m for m in imported if m == "grpc" or m.startswith(FOREIGN)}
    return edges, foreign


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str]) -> int:
    packages = _packages()
    wanted = argv[1:] or sorted(packages)
    failed = False
    for package in wanted:
        edges, foreign = graph(package, packages[package])
        print(f"# {package}")
        for module in sorted(edges):
            targets = ", ".join(t.removeprefix(package + ".") for t in sorted(edges[module])) or "-"
            print(f"  {module.removeprefix(package + '.') or '(package)'} -> {targets}")
        for component in cycles(edges):
            failed = True
            print(f"  CYCLE: {' <-> '.join(m.removeprefix(package + '.') for m in component)}")
        if package.startswith("genai_") and package not in ("genai_core", "genai_gateway"):
            for module, names in sorted(foreign.items()):
                leaf = module.rsplit(".", 1)[-1]
                if names and leaf not in ADAPTERS:
                    failed = True
                    print(f"  PROTOBUF/GRPC IN DOMAIN: {module} imports {', '.join(sorted(names))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
