"""Layers import only downward (l2l <- envs <- agents <- train / eval), and the facts they share agree."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import l2l

ROOT = Path(__file__).resolve().parents[1]
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
        "import torch\n\ndef f():\n"
        "    from train.zo_lstm import TrainConfig\n    import eval.cosine\n"
    )
    assert project_imports(source) == {"train", "eval"}


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
    assert {l2l.tasks.default_steps(name) for name in l2l.family_names()} - {500, 1000} == {200}
    for env_id, family in envs.ENV_IDS.items():
        steps, horizon = gym.registry[env_id].kwargs["steps"], l2l.tasks.default_steps(family)
        if env_id == "l2l/ZOOrder-v0":  # 2 queries a step and 1 for f(x_0), within Q = 1,000 queries
            assert 1 + 2 * steps <= horizon == envs.ORDER_BUDGET < 1 + 2 * (steps + 1)
        else:
            assert steps == horizon
    with pytest.raises(KeyError, match="unknown task 'nope'; registered tasks: binary_classification"):
        l2l.tasks.default_steps("nope")
