"""The import graph of a package, read from its source (no module is imported).

Every import counts: at the top, inside functions, and under `if TYPE_CHECKING:`.
A name imported from a package that only re-exports it is followed to the module
that defines it, so a package `__init__` does not hide a cycle (nor create one).
"""

from __future__ import annotations

import ast
from pathlib import Path


class ImportGraph:
    def __init__(self, root: Path, package: str) -> None:
        self.package = package
        self.files: dict[str, Path] = {}
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            self.files[".".join(parts)] = path
        self.trees = {name: ast.parse(path.read_text()) for name, path in self.files.items()}
        self.edges: dict[str, set[str]] = {name: set() for name in self.files}
        for name in self.files:
            for target in self._imports(name):
                if target != name:
                    self.edges[name].add(target)

    def _is_package(self, module: str) -> bool:
        return self.files[module].name == "__init__.py"

    def _absolute(self, module: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = module.split(".")
        if not self._is_package(module):
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def _imports(self, module: str) -> set[str]:
        found: set[str] = set()
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in self.files:
                        found.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(module, node)
                if source not in self.files:
                    continue
                for alias in node.names:
                    found.add(self.defining_module(source, alias.name))
        return found

    def defining_module(self, source: str, name: str, seen: frozenset[str] = frozenset()) -> str:
        """Where `from source import name` really comes from, inside the package."""
        if f"{source}.{name}" in self.files:
            return f"{source}.{name}"
        if name == "*" or source in seen:
            return source
        for node in self.trees[source].body:
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        origin = self._absolute(source, node)
                        if origin in self.files:
                            return self.defining_module(origin, alias.name, seen | {source})
        return source

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one module (Tarjan)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        components: list[list[str]] = []

        def visit(node: str) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            for target in sorted(self.edges[node]):
                if target not in index:
                    visit(target)
                    low[node] = min(low[node], low[target])
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

        for node in sorted(self.edges):
            if node not in index:
                visit(node)
        return components
