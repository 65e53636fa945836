"""Contract tests of the ZO-LSTM's parts, over every registered part (l2l.learned.zo_lstm_parts)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import l2l
from l2l.learned import ZOLSTM, ZOLSTMConfig, save_learned
from l2l.learned.checkpoint import checkpoint_dict
from l2l.learned.zo_lstm import NO_UPDATE_DELTA, upgrade_options
from l2l.learned.zo_lstm_parts import (
    BASE_STEPS,
    CORRECTED,
    DIRECTIONS,
    INPUT_TRANSFORMS,
    UPDATE_RULES,
    build_part,
)

DIM, Q = 6, 3
GRADS = [torch.linspace(-0.05, 0.05, DIM), torch.linspace(0.02, -0.06, DIM), torch.full((DIM,), 0.01)]


def _counting(target: torch.Tensor):
    """A quadratic objective on rows that counts the rows (queries) it is asked for."""

    def f(rows: torch.Tensor) -> torch.Tensor:
        f.queries += rows.shape[0]
        return ((rows - target) ** 2).sum(dim=1)

    f.queries = 0
    return f


def _directions_run(name: str, seed: int, use_query: bool = True) -> list[torch.Tensor]:
    """Three steps' estimates of a fresh ZO-LSTM with ``name`` directions, checking each step's cost."""
    host = ZOLSTM(q=Q, mu=1e-3, directions=name)
    sampler = host.direction_sampler
    carry, rng, x = host.initial_carry(DIM), torch.Generator().manual_seed(seed), torch.zeros(DIM)
    grads = []
    for _ in range(3):
        f = _counting(torch.ones(DIM))
        est, std = sampler.estimate(host, x, f, carry, rng, use_query)
        assert f.queries == sampler.queries_per_step() == host.queries_per_step(DIM) == Q + 1
        assert est.grad.shape == (DIM,) and torch.isfinite(est.grad).all()
        assert (std is not None) == (sampler.uses_query_rnn and use_query)
        x = host.apply_update(x, est.grad, carry)[0]
        grads.append(est.grad)
    return grads


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_every_direction_sampler_costs_q_plus_one_queries_and_is_seeded(name):
    first, again, other = _directions_run(name, 0), _directions_run(name, 0), _directions_run(name, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))  # so the check can fail
    _directions_run(name, 0, use_query=False)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_only_the_query_sampler_has_a_query_stage(name):
    stages = ZOLSTM(directions=name).stages(ZOLSTMConfig())
    expected = ["update", "query"] if DIRECTIONS[name].uses_query_rnn else ["update"]
    assert [stage.name for stage in stages] == expected
    assert stages[-1].options == {"directions": name}


def _steps(optimizer: ZOLSTM) -> list[torch.Tensor]:
    carry = optimizer.initial_carry(DIM)
    with torch.no_grad():
        return [optimizer.update_rule.step(optimizer.update_net, g, carry) for g in GRADS]


@pytest.mark.parametrize("norm", list(INPUT_TRANSFORMS))
@pytest.mark.parametrize("update", list(UPDATE_RULES))
def test_every_update_rule_steps_every_coordinate_deterministically(update, norm):
    optimizer = ZOLSTM(q=Q, update=update, input_norm=norm)
    steps = _steps(optimizer)
    assert all(step.shape == (DIM,) and torch.isfinite(step).all() for step in steps)
    again = _steps(ZOLSTM(q=Q, update=update, input_norm=norm))
    assert all(torch.equal(a, b) for a, b in zip(steps, again, strict=True))
    assert any(bool(step.abs().sum() > 0) for step in steps)
    # an update rule queries nothing: a whole run costs the directions' q + 1 per step
    traj = l2l.run(optimizer, l2l.make_task("quadratic", split="test", index=0, dim=DIM), steps=4, seed=0)
    assert [b - a for a, b in zip(traj.queries, traj.queries[1:], strict=False)] == [Q + 1] * 4


@pytest.mark.parametrize("base", list(BASE_STEPS))
def test_an_untrained_correction_is_exactly_its_base_step(base):
    options = {"base_delta": 3.0, "base_beta1": 0.8, "base_beta2": 0.99, "input_norm": "rms", "alpha": 2.0}
    corrected, plain = ZOLSTM(update=base + CORRECTED, **options), ZOLSTM(update=base, **options)
    assert corrected.update_rule.learned and corrected.update_rule.corrects_base
    assert not plain.update_rule.learned
    assert all(torch.equal(a, b) for a, b in zip(_steps(corrected), _steps(plain), strict=True))
    with torch.no_grad():
        corrected.update_net.head.weight.fill_(0.1)  # a trained correction moves it: the check can fail
    assert not torch.equal(_steps(corrected)[0], _steps(plain)[0])


@pytest.mark.parametrize("norm", list(INPUT_TRANSFORMS))
def test_every_input_transform_is_scaled_after_it_normalizes(norm):
    cls = INPUT_TRANSFORMS[norm]
    plain, scaled = cls(input_scale=1.0), cls(input_scale=30.0)
    cpu = torch.device("cpu")
    carry_a, carry_b = plain.initial_carry(DIM, cpu), scaled.initial_carry(DIM, cpu)
    for g in GRADS:
        a, b = plain(g, carry_a), scaled(g, carry_b)
        assert a.shape == (DIM,) and torch.allclose(b, 30.0 * a, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"input_scale=0"):
        cls(input_scale=0.0)


@pytest.mark.parametrize(
    ("option", "value"),
    [("directions", "sphere"), ("update", "lion"), ("input_norm", "layer"), ("sigma_norm", "max"),
     ("trend_decay", 1.0), ("guided_alpha", 1.5), ("base_delta", 0.0), ("alpha", 0.0),
     ("q", 0), ("mu", 0.0), ("hidden", 0), ("query_prob", 2.0)],
)  # fmt: skip
def test_an_invalid_option_is_refused_by_the_part_that_uses_it(option, value):
    uses = {"trend_decay": {"directions": "trend"}, "guided_alpha": {"directions": "guided_es"},
            "base_delta": {"update": "sgd"}}  # fmt: skip
    with pytest.raises(ValueError, match=option):
        ZOLSTM(**{**uses.get(option, {}), option: value})
    if option not in {f.name for f in dataclasses.fields(ZOLSTMConfig)}:
        return  # an evaluation-time option (guided_alpha): meta-training has none
    with pytest.raises(ValueError, match=option):  # the training config: the same check, via the optimizer
        ZOLSTMConfig(**{**uses.get(option, {}), "update": "sgd+rnn", option: value})


def test_the_training_config_refuses_an_update_without_an_updaternn():
    with pytest.raises(ValueError, match="no UpdateRNN to meta-train"):
        ZOLSTMConfig(update="sgd")
    with pytest.raises(ValueError, match=r"beta1=1\.0 must be in"):
        ZOLSTM(update="adam", base_beta1=1.0)  # the base step checks its own options


def test_a_part_is_built_from_the_options_it_declares():
    sampler = build_part(DIRECTIONS["trend"], ZOLSTM(q=5, mu=0.01, directions="trend", trend_decay=0.5))
    assert (sampler.q, sampler.mu, sampler.trend_strength, sampler.trend_decay) == (5, 0.01, 1.0, 0.5)


@pytest.mark.parametrize(
    ("legacy", "today"),
    [({"update": "rnn", "update_base": "none", "sgd_delta": 4.0}, {"update": "rnn"}),
     ({"update": "rnn", "update_base": "adam", "sgd_delta": 4.0}, {"update": "adam+rnn"}),
     ({"update": "rnn", "update_base": "sgd", "sgd_delta": 4.0}, {"update": "sgd+rnn"}),
     ({"update": "sgd", "update_base": "adam", "sgd_delta": 7.0}, {"update": "sgd", "base_delta": 7.0}),
     ({"update": "rnn", "sgd_delta": 4.0}, {"update": "rnn"}),  # format 1: before update_base
     ({"update_base": "adam", "q": 3}, {"update": "adam+rnn", "q": 3}),  # a train.zo_lstm record
     ({"update": "adam+rnn", "base_delta": 2.0}, {"update": "adam+rnn", "base_delta": 2.0})],  # today's
)  # fmt: skip
def test_old_option_names_are_read_in_one_place(legacy, today):
    assert upgrade_options(legacy) == today


def test_a_version_2_checkpoint_with_the_old_update_fields_loads(tmp_path):
    based = ZOLSTM(q=Q, update="adam+rnn", base_beta1=0.99)
    ckpt = checkpoint_dict(based)
    legacy = {k: v for k, v in ckpt["config"].items() if k != "update"}
    legacy.update(update="rnn", update_base="adam", sgd_delta=4.0)
    torch.save({**ckpt, "format_version": 2, "config": legacy}, tmp_path / "v2.pt")
    loaded = l2l.load_optimizer(tmp_path / "v2.pt")
    assert loaded.config() == based.config() and loaded.update == "adam+rnn"
    assert torch.load(save_learned(tmp_path / "v3.pt", loaded), weights_only=True)["format_version"] == 3


def test_the_no_update_ablation_drops_the_updaternn_and_its_options():
    based = ZOLSTM(q=Q, update="adam+rnn", input_norm="rms")
    ablated = based.make_variant("no_update")
    assert (ablated.update, ablated.base_delta, ablated.input_norm) == ("sgd", NO_UPDATE_DELTA, "rms")
    assert ablated.make_variant("", base_delta=1.0).base_delta == 1.0  # no UpdateRNN: its options are free
    with pytest.raises(ValueError, match="update"):
        based.with_options(update="rnn")  # still learned: the UpdateRNN was trained on the Adam base


def test_the_generic_meta_trainer_imports_nothing_of_the_zo_lstm():
    source = Path(__file__).resolve().parents[3] / "l2l" / "learned" / "meta.py"
    modules = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    assert modules and not any("zo_lstm" in name for name in modules)
