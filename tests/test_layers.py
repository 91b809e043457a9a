"""The package's layers, read from the source with ``ast`` (every import counts: at the top, inside functions and
under ``TYPE_CHECKING``): no import cycle between modules, no command package importing another, and the spectral
engine free of Lightning and of the commands (docs/architecture.md, "Import discipline")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "zsguide"
COMMANDS = ("restore", "evaluate", "calibration", "prior", "analyze", "search")
DISPATCH = ("zsguide.cli", "zsguide.__main__")  # above the commands: they import every command


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, dict[str, tuple[str, int]]]:
    """``{module: {imported module or external top-level name: (file, line)}}`` for every module of zsguide; an
    import of a package's name resolves to the submodule when there is one (``from . import store``)."""
    files = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    graph: dict[str, dict[str, tuple[str, int]]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        found: dict[str, tuple[str, int]] = {}

        def add(target: str, line: int) -> None:
            if target.split(".")[0] != "zsguide":
                found.setdefault(target.split(".")[0], (str(path), line))
                return
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, (str(path), line))

        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    mod = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:
                    full = f"{mod}.{alias.name}"
                    add(full if full in files else mod, node.lineno)
        graph[name] = found
    return graph


def cycles(graph: dict[str, dict[str, tuple[str, int]]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    internal = {v: [w for w in ws if w in graph] for v, ws in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in internal[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in internal:
        if v not in index:
            visit(v)
    return out


def command_of(module: str) -> str | None:
    """The command package (zsguide/commands/<name>/) ``module`` belongs to, or None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "commands" and parts[2] in COMMANDS else None


def test_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    lines = [
        f"{v} imports {w} ({graph[v][w][0]}:{graph[v][w][1]})"
        for group in found
        for v in group
        for w in graph[v]
        if w in group
    ]
    assert not found, "import cycles:\n" + "\n".join(lines)


def test_every_command_package_is_known():
    assert {p.name for p in (ROOT / "commands").iterdir() if (p / "__init__.py").is_file()} == set(COMMANDS)


def test_no_command_package_imports_another():
    graph = import_graph()
    bad = [
        f"{v} imports {w} ({where}:{line})"
        for v, ws in graph.items()
        for w, (where, line) in ws.items()
        if command_of(w) is not None and command_of(w) != command_of(v) and v not in DISPATCH
    ]
    assert not bad, "imports across command packages, or from below them into a command:\n" + "\n".join(bad)


def test_spectral_imports_no_lightning_and_no_command():
    graph = import_graph()
    bad = [
        f"{v} imports {w} ({where}:{line})"
        for v, ws in graph.items()
        if v.startswith("zsguide.spectral")
        for w, (where, line) in ws.items()
        if w in ("lightning", "pytorch_lightning") or command_of(w) is not None or w.startswith("zsguide.runtime")
    ]
    assert not bad, "the spectral engine imports Lightning or a command:\n" + "\n".join(bad)
