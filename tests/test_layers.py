"""Layers import only downward (l2l <- envs <- agents <- train / eval), no module takes part in an import
cycle, and the facts the layers share agree."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import l2l
from tests.helpers import ROOT

#: each layer and the project layers it may import (besides itself)
ALLOWED = {
    "l2l": set(),
    "envs": {"l2l"},
    "agents": {"l2l", "envs"},
    "train": {"l2l", "envs", "agents"},
    "eval": {"l2l", "envs", "agents"},
}


def project_imports(path: Path) -> set[str]:
    """The top-level project packages ``path`` imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(ALLOWED)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = {
        str(path.relative_to(ROOT)): sorted(project_imports(path) - ALLOWED[layer] - {layer})
        for path in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_layer_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "import torch\n\ndef f():\n    from train.zo_lstm import TrainConfig\n    import eval.cosine\n"
    )
    assert project_imports(source) == {"train", "eval"}


def module_files(root: Path, packages=tuple(ALLOWED)) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root`` (a package is its
    ``__init__``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(root: Path, packages=tuple(ALLOWED)) -> dict[str, set[str]]:
    """Module -> the project modules it imports: at module level, inside functions, and by
    ``importlib.import_module("literal")``. ``from p import n`` points at ``p.n`` when that is a module,
    else at ``p``; a name inside a module points at that module."""
    modules = module_files(root, packages)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {owner(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: strip level - 1 packages from this module's package
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.add(child if child in modules else owner(base))
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                targets.add(owner(node.args[0].value))
        graph[module] = targets - {None, module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan's algorithm, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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
                    cycles.append(sorted(component))
    return sorted(cycles)


def test_no_module_takes_part_in_an_import_cycle():
    graph = import_graph(ROOT)
    assert len(graph) > 100 and "l2l.learned.checkpoint" in graph
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_through_a_package_init_and_import_module(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg import sub\n")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.leaf import f\n")
    (package / "sub" / "leaf.py").write_text(
        "import importlib\n\ndef f():\n    importlib.import_module('pkg')\n"
    )
    (package / "alone.py").write_text("from . import sub\n")
    graph = import_graph(tmp_path, packages=("pkg",))
    assert graph["pkg.alone"] == {"pkg.sub"}
    assert import_cycles(graph) == [["pkg", "pkg.sub", "pkg.sub.leaf"]]


def test_bench_schedule_is_the_zo_lstm_training_default():
    from l2l.learned.schedule import ZO_LSTM_SCHEDULE
    from train.zo_lstm import TrainConfig

    defaults = TrainConfig()
    assert {f.name: getattr(defaults, f.name) for f in dataclasses.fields(ZO_LSTM_SCHEDULE)} == (
        dataclasses.asdict(ZO_LSTM_SCHEDULE)
    )


def test_horizons_come_from_the_family():
    import gymnasium as gym

    import envs

    assert l2l.tasks.default_steps("binary_classification") == 500  # papers/002 fig. 3
    # the order attack's horizon is its budget: Rand spends Q = 1,000 queries in 1,000 steps (papers/004)
    assert l2l.tasks.default_steps("fashion_order_attack") == 1000
    # the ImageNet track's horizon is the field's 10,000-query budget at one query per search step
    assert {l2l.tasks.default_steps(f"imagenet_attack_{norm}") for norm in ("linf", "l2")} == {10_000}
    assert {l2l.tasks.default_steps(name) for name in l2l.family_names()} - {500, 1000, 10_000} == {200}
    for env_id, family in envs.ENV_IDS.items():
        steps, horizon = gym.registry[env_id].kwargs["steps"], l2l.tasks.default_steps(family)
        if env_id == "l2l/ZOOrder-v0":  # 2 queries a step and 1 for f(x_0), within Q = 1,000 queries
            assert 1 + 2 * steps <= horizon == envs.ORDER_BUDGET < 1 + 2 * (steps + 1)
        else:
            assert steps == horizon
    with pytest.raises(KeyError, match="unknown task 'nope'; registered tasks: binary_classification"):
        l2l.tasks.default_steps("nope")
