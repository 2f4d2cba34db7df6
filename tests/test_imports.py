"""Dependency direction: imports flow one way (no cycles, nothing below importing what is
above); analysis and the light modules never import torch; train never imports duckdb/altair."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hardstat

PACKAGE = Path(hardstat.__file__).parent

# The layers of hardstat, top to bottom. A module may import modules of its own group (the
# longest prefix below that names it) and anything in a lower layer; never a module of a higher
# layer, nor another group of its own layer (train and analysis stay apart, so do report and
# sweep). `hardstat.train.negatives` is pure tensor functions under the recorder (which ranks
# negatives with it) and the public `hardstat.negatives`; the rest of `train` is above both.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hardstat.__main__",),  # python -m hardstat
    ("hardstat.cli",),  # the command line
    ("hardstat.demo",),  # trains, evaluates and reports: above all of them
    ("hardstat.report", "hardstat.sweep"),
    ("hardstat.charts",),
    ("hardstat.train", "hardstat.analysis", "hardstat.integrations"),
    ("hardstat.record", "hardstat.negatives"),  # building blocks for any training loop
    ("hardstat.train.negatives",),
    ("hardstat.runs", "hardstat.logwriter", "hardstat.corpus"),
    ("hardstat.config",),
    (
        "hardstat",  # the package itself (its version)
        "hardstat.bands",
        "hardstat.classes",
        "hardstat.data",
        "hardstat.display",
        "hardstat.interrupts",
        "hardstat.schema",
        "hardstat.seeds",
    ),
    ("hardstat.errors",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every hardstat module and the hardstat modules it imports anywhere (top level, inside
    functions, under TYPE_CHECKING), read from the source."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import (use absolute imports)")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hardstat"):
                for alias in node.names:  # `from hardstat import runs` imports a module
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in paths else str(node.module))
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("hardstat")}
        graph[name] = deps - {name}
    return graph


def _place(module: str) -> tuple[int, str]:
    """(layer, group) of a module: the longest group name that is it or a package above it."""
    best: tuple[int, str] | None = None
    for layer, groups in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (
                best is None or len(group) > len(best[1])
            ):
                best = (layer, group)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """The imports that break the layer rule."""
    bad = []
    for module, deps in sorted(graph.items()):
        layer, group = _place(module)
        for dep in sorted(deps):
            dep_layer, dep_group = _place(dep)
            if dep_group != group and dep_layer <= layer:
                bad.append(f"{module} (layer {layer}) imports {dep} (layer {dep_layer})")
    return bad


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports, or None. A package's __init__ that imports its own submodules to
    register them (`hardstat.cli.analyze`, whose commands import its `app`) does not count."""
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for dep in sorted(graph.get(module, ())):
            found = visit(dep, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    bad = upward_imports(import_graph())
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    cycle = import_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_upward_and_sideways_imports_and_cycles() -> None:
    assert upward_imports({"hardstat.record": {"hardstat.train.loop"}})  # up
    assert upward_imports({"hardstat.train.loop": {"hardstat.analysis.logs"}})  # sideways
    assert upward_imports({"hardstat.runs": {"hardstat.logwriter"}})  # sideways, low layer
    assert not upward_imports({"hardstat.train.loop": {"hardstat.record", "hardstat.seeds"}})
    assert not upward_imports({"hardstat.train.model": {"hardstat.train.negatives"}})
    assert import_cycle({"hardstat.a": {"hardstat.b"}, "hardstat.b": {"hardstat.a"}}) == [
        "hardstat.a",
        "hardstat.b",
        "hardstat.a",
    ]
    registration = {"hardstat.cli.x": {"hardstat.cli.x.y"}, "hardstat.cli.x.y": {"hardstat.cli.x"}}
    assert import_cycle(registration) is None


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


ANALYSIS_MODULES = sorted(
    m for m in import_graph() if m == "hardstat.analysis" or m.startswith("hardstat.analysis.")
)


@pytest.mark.parametrize("module", ANALYSIS_MODULES)
def test_analysis_modules_do_not_import_torch(module: str) -> None:
    assert "torch" not in imported_after(module)


def test_every_analysis_module_is_checked() -> None:
    on_disk = {p.stem for p in (PACKAGE / "analysis").glob("*.py") if p.stem != "__init__"}
    assert {m.rsplit(".", 1)[-1] for m in ANALYSIS_MODULES} >= on_disk


@pytest.mark.parametrize(
    "module",
    [
        "hardstat.cli",
        "hardstat.schema",
        "hardstat.config",
        "hardstat.bands",
        "hardstat.runs",
        "hardstat.logwriter",
        "hardstat.classes",
        "hardstat.record",
        "hardstat.corpus",
        "hardstat.seeds",
    ],
)
def test_light_modules_do_not_import_torch(module: str) -> None:
    mods = imported_after(module)
    assert "torch" not in mods and "duckdb" not in mods and "altair" not in mods


def test_train_does_not_import_duckdb_or_altair() -> None:
    mods = imported_after("hardstat.train.loop")
    assert "torch" in mods
    assert "duckdb" not in mods and "altair" not in mods and "polars" not in mods
