"""The package's layering, read from the source (every import, at module level or inside a function):

* no import cycle among the parts of ``superres`` (its subpackages and top-level modules);
* the inference path (``inference/``, ``archs/``, ``io/``, ``metrics/``) imports nothing from ``train/``,
  ``deploy/``, ``serve/``, ``eval/`` or ``cluster/``.

The ``<part>/command.py`` (and ``__main__.py``) modules are the command line's (``cli.py`` mounts each), so they count as part
of ``cli``, the top layer, wherever they sit. ``superres/__init__.py`` is the public facade and counts as
its own part. A failure names the import that closes the cycle or crosses the layer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "superres"
INFERENCE_PATH = ("inference", "archs", "io", "metrics")
ABOVE_INFERENCE = ("train", "deploy", "serve", "eval", "cluster")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str:
    """The layer a module belongs to: its subpackage or top-level module; command modules are the CLI's."""
    parts = module.split(".")
    if len(parts) == 1:
        return "superres"  # the facade, superres/__init__.py
    if parts[-1] in ("command", "__main__") or parts[1] == "cli":
        return "cli"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute names of every superres module (or module attribute) ``path`` imports, with line numbers."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(n, node.lineno) for n in (names if not node.module else [target] + names)]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return [(n, line) for n, line in found if n == "superres" or n.startswith("superres.")]


def _known_parts() -> set[str]:
    return {p.stem if p.is_file() else p.name for p in SRC.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}


def _edges() -> dict[tuple[str, str], list[str]]:
    known = _known_parts()
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in SRC.rglob("*.py"):
        src = _part(_module_name(path))
        for target, line in _imports(path):
            parts = target.split(".")
            if len(parts) > 1 and parts[1] not in known:
                continue  # "from superres import __version__"-style attribute of the facade
            # Only a module counts, not an attribute: "superres.zoo.loader.load_network" -> superres.zoo.loader.
            mod = target
            while mod.count(".") and not _exists(mod):
                mod = mod.rsplit(".", 1)[0]
            dst = _part(mod)
            if dst != src:
                edges[(src, dst)].append(f"{path.relative_to(SRC.parent)}:{line} imports {target}")
    return edges


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (SRC.parent / rel).with_suffix(".py").is_file() or (SRC.parent / rel / "__init__.py").is_file()


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_among_parts() -> None:
    edges = _edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    cycle = _find_cycle(graph)
    if cycle:
        why = [edges[(a, b)][0] for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle " + " -> ".join(cycle) + ":\n  " + "\n  ".join(why))


def test_inference_path_imports_nothing_above_it() -> None:
    bad = [w for (a, b), where in _edges().items() if a in INFERENCE_PATH and b in ABOVE_INFERENCE for w in where]
    assert not bad, "the inference path reaches up:\n  " + "\n  ".join(bad)


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    """The rules above would pass vacuously if function-level imports were missed: they are not."""
    found = dict(_imports(SRC / "loading.py"))
    assert "superres.deploy.runtime.load_backend_model" in found  # imported inside a function
    assert ("loading", "deploy") in _edges()
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _module_edges(package: str) -> dict[tuple[str, str], list[str]]:
    """Imports between the modules of one subpackage (``zoo``), module-level and inside functions; an
    import of the package's ``__init__`` or of another package does not count."""
    prefix = f"superres.{package}."
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in (SRC / package).rglob("*.py"):
        src = _module_name(path)
        for target, line in _imports(path):
            mod = target
            while mod.count(".") and not _exists(mod):
                mod = mod.rsplit(".", 1)[0]
            if mod.startswith(prefix) and mod != src and not (SRC.parent / Path(*mod.split("."))).is_dir():
                edges[(src, mod)].append(f"{path.relative_to(SRC.parent)}:{line} imports {target}")
    return edges


def test_no_import_cycle_inside_the_zoo() -> None:
    """Sources, converters and cards import one way (zoo.cards and zoo.ncnn_format at the floor), so no
    module of the zoo reaches one that reaches back, even through a function-level import."""
    edges = _module_edges("zoo")
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    cycle = _find_cycle(graph)
    if cycle:
        why = [edges[(a, b)][0] for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle inside zoo/ " + " -> ".join(cycle) + ":\n  " + "\n  ".join(why))
    assert ("superres.zoo.ncnn_families", "superres.zoo.ncnn_walk") in edges  # the checker sees the converters


def test_zoo_converters_import_no_private_names() -> None:
    """Converters share helpers through public names only (no ``from .ncnn import _Walk``)."""
    bad = [f"{p.relative_to(SRC.parent)}:{line} imports {t}" for p in (SRC / "zoo").rglob("*.py")
           for t, line in _imports(p) if t.startswith("superres.zoo.") and t.rsplit(".", 1)[-1].startswith("_")]
    assert not bad, "private names cross zoo modules:\n  " + "\n  ".join(bad)
