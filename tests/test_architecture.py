"""The package layout is the architecture: layers import downwards only, nothing imports in a
cycle, Ray lives in `actors/` alone, and the pure core (game loop, RAE, loss) loads without Ray,
vLLM or DeepSpeed. These tests read the source (every import, including those inside
functions) and, for the pure core, a fresh interpreter's `sys.modules`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "spiral_games"
LEAVES = "leaves"  # the top-level modules: types, errors, faults, manifest, logprobs, ...

# Which layers each layer may import (its own included). Direction: leaves <- config <- play,
# llm, learn, report <- actors, reasoning <- run <- perf.
ALLOWED = {
    LEAVES: {LEAVES},
    "config": {LEAVES, "config"},
    "play": {LEAVES, "config", "play"},
    "llm": {LEAVES, "config", "llm"},
    "learn": {LEAVES, "config", "learn"},
    "report": {LEAVES, "report"},
    "reasoning": {LEAVES, "config", "play", "llm", "report", "reasoning"},
    "actors": {LEAVES, "config", "play", "llm", "learn", "actors"},
    "run": {LEAVES, "config", "play", "llm", "learn", "actors", "report", "reasoning", "run"},
    "perf": {LEAVES, "config", "play", "llm", "learn", "actors", "report", "run", "perf"},
}
HEAVY = ("ray", "vllm", "deepspeed")
# The only modules allowed to import each heavy dependency.
HEAVY_HOMES = {
    "ray": ("spiral_games.actors.",),
    "vllm": ("spiral_games.llm.engines.vllm", "spiral_games.config.hardware"),
    "deepspeed": ("spiral_games.learn.learner",),
}
PURE_CORE = (
    "spiral_games.play.loop",
    "spiral_games.play.game",
    "spiral_games.play.registry",
    "spiral_games.play.human",
    "spiral_games.learn.advantage",
    "spiral_games.learn.loss",
    "spiral_games.learn.step_batch",
    "spiral_games.llm.kv_cache",  # the KV cache's size, chosen before vLLM is imported
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (top level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # submodule imports
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: {
            m
            for m in _imports(path)
            if m in MODULES and m != name and MODULES[m].stem != "__init__"
        }
        for name, path in MODULES.items()
    }


def _layer(module: str) -> str:
    parts = module.split(".")
    return LEAVES if len(parts) == 2 else parts[1]


def test_every_module_belongs_to_a_known_layer():
    assert {_layer(m) for m in MODULES if m != "spiral_games"} <= set(ALLOWED)


def test_layers_import_only_downwards():
    wrong = [
        f"{src} ({_layer(src)}) imports {dst} ({_layer(dst)})"
        for src, targets in _graph().items()
        if src != "spiral_games"
        for dst in sorted(targets)
        if _layer(dst) not in ALLOWED[_layer(src)]
    ]
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: each component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    assert not _cycles(_graph())


def test_the_cycle_finder_sees_function_level_cycles(tmp_path: Path):
    # x imports y inside a function, y imports x at the top: the walk must see both edges.
    (tmp_path / "x.py").write_text("def f():\n    from spiral_games.a.y import g\n")
    (tmp_path / "y.py").write_text("from spiral_games.a import x\n")
    assert "spiral_games.a.y" in _imports(tmp_path / "x.py")
    assert "spiral_games.a.x" in _imports(tmp_path / "y.py")
    graph = {"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": {"a.x"}, "b": {"b2"}, "b2": {"b3"}, "b3": {"b"}}
    assert _cycles(graph) == [["a.x", "a.y"], ["b", "b2", "b3"]]


def test_heavy_dependencies_are_imported_only_by_their_adapters():
    wrong = []
    for name, path in MODULES.items():
        for imported in _imports(path):
            root = imported.split(".")[0]
            if root in HEAVY and not name.startswith(HEAVY_HOMES[root]):
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(sorted(wrong))


def test_pure_core_loads_without_ray_vllm_or_deepspeed():
    code = (
        "import sys\n"
        f"import {', '.join(PURE_CORE)}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_subpackages_reexport_nothing():
    # No shims: a subpackage's __init__ is a docstring, so every import names the real module.
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not imports, init


def test_no_two_layers_may_import_each_other():
    for layer, allowed in ALLOWED.items():
        for other in allowed - {layer}:
            assert layer not in ALLOWED[other], (layer, other)
