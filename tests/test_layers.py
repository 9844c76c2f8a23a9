"""The house rules, read off the import graph of the four packages (every `import`, module-level or
inside a function): `shared` at the bottom, `monitoring` on it, `workers` and `planner_service`
above and never importing each other outside the composition root (`cli*` and `stack*` modules),
and no import circles anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "monitoring", "workers", "planner_service")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules one import statement loads (the nearest known module of each name)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            if MODULES[module].name != "__init__.py":
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
        names = subs if len(subs) == len(node.names) else [source, *subs]
    out = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[module] |= _targets(module, node)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _composition_root(module: str) -> bool:
    return _top(module) == "planner_service" and module.rsplit(".", 1)[-1].startswith(("cli", "stack"))


ALLOWED = {
    "shared": {"shared"},
    "monitoring": {"shared", "monitoring"},
    "workers": {"shared", "monitoring", "workers"},
    "planner_service": {"shared", "monitoring", "planner_service"},
}


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        allowed = ALLOWED[_top(module)] | ({"workers"} if _composition_root(module) else set())
        bad += [f"{module} -> {t}" for t in sorted(targets) if _top(t) not in allowed]
    return bad


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # a few edges that must be seen, so that a broken reader cannot pass the rules below
    assert "shared.settings" in graph["shared.celery_app"]
    assert "workers.pools" in graph["planner_service.cli_eval"]  # a function-level import
    assert "planner_service.api.openai_facade" in graph["planner_service.api.app"]
    assert "planner_service.api" not in graph["planner_service.api.app"]  # submodules, not the package


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_layers_import_one_way() -> None:
    assert violations(import_graph()) == []


def test_the_rules_catch_what_they_forbid() -> None:
    graph = {"shared.a": {"workers.b"}, "workers.b": {"planner_service.c"}, "planner_service.c": {"shared.a"},
             "planner_service.cli_x": {"workers.b"}, "monitoring.m": {"planner_service.c"}}
    assert violations(graph) == ["monitoring.m -> planner_service.c", "shared.a -> workers.b",
                                 "workers.b -> planner_service.c"]
    assert circles(graph) == [["planner_service.c", "shared.a", "workers.b"]]


def test_modules_stay_small() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}, f"split these (over {MAX_LINES} lines)"
