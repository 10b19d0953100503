"""The package graph, read from the source: directions, no cycles, imports at the top.

Every module of runtime/, training/, export/, benchmarks/ and edge/ is parsed (nothing is
imported) and each import statement, function-local ones included, becomes an edge to the
project module it names (`from pkg import sub` names the submodule `pkg.sub`; `from pkg
import name` names `pkg`).

- Directions (docs/architecture.md): runtime imports none of the others; training never
  imports export, benchmarks, edge or runtime.pipeline; export never imports benchmarks or
  edge. benchmarks and edge sit on top.
- No import cycle between modules, function-local imports counted: a cycle hidden inside a
  function still ties the two modules together.
- Imports sit at the module top. A function-local import must defer something heavy or
  optional: a third-party package outside the core dependencies (torch, transformers,
  llama_cpp, onnxruntime, matplotlib, fastapi...), a project module that imports one at its
  top, or, in edge/commands/, the implementation of a subcommand (`edge --help` builds every
  parser and must neither pay for nor need the stacks behind them). `ALLOWED_LOCAL` lists the
  remaining exceptions with their reason.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "training", "export", "benchmarks", "edge")
# pyproject's [project] dependencies, as imported: always installed, so never worth deferring
CORE_THIRD_PARTY = {"numpy", "PIL", "tokenizers", "psutil", "tqdm"}
FORBIDDEN = {
    "runtime": ("training", "export", "benchmarks", "edge"),
    "training": ("export", "benchmarks", "edge", "runtime.pipeline"),
    "export": ("benchmarks", "edge"),
}
# subcommand implementations edge/commands/ may import inside the command's function
LAZY_FROM_COMMANDS = ("training", "export", "benchmarks", "edge.recipes", "edge.serve", "edge.demo")
ALLOWED_LOCAL = {
    # importing importlib.metadata costs ~30 ms: only `edge --version` pays for it
    ("edge.cli", "importlib.metadata"): "startup of every edge command",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # a project module, or a third-party / stdlib name
    line: int
    local: bool  # inside a function


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _project_module(name: str) -> str | None:
    """The longest project module `name` starts with."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in modules():
            return ".".join(parts[:k])
    return None


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _local_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a function (at any depth)."""
    out = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            out.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return out


@cache
def imports() -> tuple[Import, ...]:
    out = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local = _local_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, path, node)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names]
            else:
                continue
            for name in names:
                target = _project_module(name) or name
                if target != module:
                    out.append(Import(module, target, node.lineno, id(node) in local))
    return tuple(out)


def _graph(*, local: bool = True) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in imports():
        if imp.target in modules() and (local or not imp.local):
            graph[imp.module].add(imp.target)
    return graph


def _is(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_every_package_is_parsed():
    assert {m.split(".")[0] for m in modules()} == set(PACKAGES)
    assert sum(imp.local for imp in imports()) > 0 and len(imports()) > 500  # the walk sees both kinds


def test_package_directions():
    bad = [f"{imp.module}:{imp.line} imports {imp.target}{' (inside a function)' if imp.local else ''}"
           for imp in imports()
           if any(_is(imp.target, f) for f in FORBIDDEN.get(imp.module.split(".")[0], ()))]
    assert not bad, "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_find_cycle_sees_a_cycle_through_a_function_local_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    cycle = find_cycle(_graph(local=True))
    assert cycle is None, " -> ".join(cycle)


def _third_party(name: str) -> str | None:
    top = name.split(".")[0]
    if top in PACKAGES or top in sys.stdlib_module_names or top == "__future__":
        return None
    return top


@cache
def heavy_at_import(module: str) -> bool:
    """Importing `module` imports an optional third-party package (through top-level imports)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for imp in imports():
            if imp.module != m or imp.local:
                continue
            if imp.target in modules():
                todo.append(imp.target)
            elif (tp := _third_party(imp.target)) and tp not in CORE_THIRD_PARTY:
                return True
    return False


def _local_import_reason(imp: Import) -> str | None:
    tp = _third_party(imp.target)
    if tp is not None:
        return None if tp in CORE_THIRD_PARTY else "optional dependency"
    if imp.target in modules():
        if heavy_at_import(imp.target):
            return "pulls an optional dependency"
        if _is(imp.module, "edge.commands") and any(_is(imp.target, p) for p in LAZY_FROM_COMMANDS):
            return "subcommand implementation"
    return ALLOWED_LOCAL.get((imp.module, imp.target))


def test_function_local_imports_only_defer_heavy_or_optional_dependencies():
    bad = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in imports()
           if imp.local and _local_import_reason(imp) is None]
    assert not bad, "move these imports to the top of their module:\n" + "\n".join(bad)


def test_every_module_imports():
    """Each module imports (in a fresh process): a name moved between modules and left behind
    in an importer's `from X import name` breaks only the command that reaches it."""
    code = ("import importlib, sys\nbad = []\n"
            f"for m in {sorted(m for m in modules() if not m.endswith('__main__'))!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except ImportError as exc:\n        bad.append(f'{m}: {exc}')\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
