"""envs.spec: the one validator of (observe, directions, ZO-LSTM) combinations, and the spec's defaults."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

import l2l
from envs import MDPSpec, ZOEnv, check_mdp
from envs.mdp import OBSERVE_MODES
from envs.spec import FAMILY_MDP, default_mu_eta, default_q
from l2l.optimizers import tuned_params


def lstm(directions: str = "query", q: int = 20, mu: float = 1e-4) -> SimpleNamespace:
    """The facts of a ZO-LSTM that the validator reads."""
    return SimpleNamespace(directions=directions, q=q, mu=mu)


@pytest.fixture(scope="module")
def tasks():
    return {
        "mnist": l2l.make_task("mnist_attack", split="val", index=0),
        "quadratic": l2l.make_task("quadratic", split="val", index=0),
    }


VALID = [
    ({}, None, None),
    ({"observe": "image"}, "mnist", None),
    ({"observe": "image_delta_estimate", "q": 3}, "mnist", None),
    ({"observe": "iterate_estimate"}, "quadratic", None),
    ({"observe": "iterate_trend", "directions": "guided"}, "quadratic", None),
    ({"observe": "image_trend", "directions": "guided", "q": 5}, "mnist", None),
    ({"directions": "guided", "zo_lstm": "z.pt"}, None, None),
    ({"observe": "image", "directions": "guided", "zo_lstm": "z.pt"}, "mnist", lstm()),
    ({"directions": "guided", "zo_lstm": "z.pt", "q": 20}, None, lstm(q=20)),
    ({"observe": "image"}, "mnist", lstm("gaussian")),  # a single policy sampling for a ZO-LSTM
    ({"directions": "guided", "q": 4}, "quadratic", lstm("query", q=8)),
]

#: (spec fields, task, ZO-LSTM facts, the error's words: the bad value and the fix)
INVALID = [
    ({"observe": "pixels"}, None, None, r"observe='pixels' must be one of iterate, image"),
    ({"directions": "both"}, None, None, r"directions='both' must be one of single, guided"),
    ({"q": 0}, None, None, r"q=0 must be an integer >= 1"),
    ({"mu": 0.0}, None, None, r"mu=0\.0 must be > 0"),
    ({"eta": -1.0}, None, None, r"eta=-1\.0 must be > 0"),
    ({"observe": "iterate_trend"}, None, None,
     r"observe='iterate_trend' follows the noise of guided steps: use directions='guided' \(--directions"),
    ({"observe": "image_trend"}, "mnist", None, r"observe='image_trend' follows the noise of guided steps"),
    ({"zo_lstm": "z.pt"}, None, None,
     r"zo_lstm='z\.pt' steps the guided form's directions; pass directions='guided'"),
    ({"observe": "iterate_estimate", "directions": "guided", "zo_lstm": "z.pt"}, None, None,
     r"observe='iterate_estimate' shows the policy the past ZO estimates.*use observe='iterate' or 'image'"),
    ({"observe": "iterate_trend", "directions": "guided", "zo_lstm": "z.pt"}, None, None,
     r"observe='iterate_trend' shows the policy the past ZO estimates"),
    ({"observe": "image_estimate"}, "mnist", lstm(), r"observe='image_estimate' shows the policy the past"),
    ({"observe": "image"}, "quadratic", None,
     r"observe='image' needs a task that perturbs an image.*use observe='iterate'"),
    ({"observe": "image_delta"}, "quadratic", None, r"observe='image_delta' needs a task that perturbs"),
    ({"directions": "guided", "zo_lstm": "z.pt"}, None, lstm("gaussian"),
     r"zo_lstm='z\.pt' must sample along its QueryRNN \(directions 'query', it has 'gaussian'\)"),
    ({"directions": "guided", "zo_lstm": "z.pt", "q": 7}, None, lstm(q=20),
     r"sets q itself \(q=20; leave q unset\)"),
    ({}, None, lstm("trend"), r"directions='trend' draws its own directions and would ignore the policy"),
    ({"directions": "guided"}, None, lstm("guided_es"), r"directions='guided_es' draws its own directions"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "task", "facts"), VALID)
def test_valid_combinations_pass(fields, task, facts, tasks):
    spec = MDPSpec(**fields)
    assert check_mdp(spec, tasks.get(task), facts) is spec


@pytest.mark.parametrize(("fields", "task", "facts", "match"), INVALID)
def test_invalid_combinations_name_the_value_and_the_fix(fields, task, facts, match, tasks):
    with pytest.raises(ValueError, match=match):
        check_mdp(MDPSpec(**fields), tasks.get(task), facts)


def test_the_spec_refuses_what_no_task_or_zo_lstm_can_fix_when_it_is_made():
    with pytest.raises(ValueError, match="follows the noise of guided steps"):
        MDPSpec(observe="iterate_trend")
    spec = MDPSpec(observe="iterate_trend", directions="guided")
    with pytest.raises(ValueError, match="follows the noise of guided steps"):
        dataclasses.replace(spec, directions="single")  # a changed copy is checked again


def test_every_observation_mode_is_valid_somewhere(tasks):
    for observe in OBSERVE_MODES:
        check_mdp(MDPSpec(observe=observe, directions="guided"), tasks["mnist"])


def test_resolve_fills_q_mu_and_eta_from_the_family_or_the_zo_lstm():
    d = 784
    zo_sgd = tuned_params("zo_sgd", "mnist_attack")
    single = MDPSpec().resolve("mnist_attack", d)
    # one direction per step: the tuned ZO-SGD learning rate over its q (envs.spec.default_mu_eta)
    assert (single.q, single.mu, single.eta) == (1, zo_sgd["mu"], zo_sgd["delta"] / (d * zo_sgd["q"]))
    guided = MDPSpec(directions="guided").resolve("mnist_attack", d)
    assert (guided.q, guided.eta) == (default_q("mnist_attack"), zo_sgd["delta"] / d) and guided.resolved
    kept = MDPSpec(directions="guided", q=3, mu=0.5, eta=0.25).resolve("mnist_attack", d)
    assert (kept.q, kept.mu, kept.eta) == (3, 0.5, 0.25)
    inside = MDPSpec(directions="guided", zo_lstm="z.pt").resolve("mnist_attack", d, lstm(q=8, mu=0.01))
    assert (inside.q, inside.mu) == (8, 0.01)
    assert default_mu_eta("fashion_order_attack", 10) == FAMILY_MDP["fashion_order_attack"] == (4 / 255, 1e-4)
    assert not MDPSpec().resolved


def test_old_zips_without_the_guided_keys_read_as_single_direction():
    old = {"task": "mnist_attack", "observe": "image", "mu": 1e-4, "eta": 1e-3, "steps": 200}
    assert MDPSpec.from_describe(old) == MDPSpec(observe="image", directions="single", q=1, mu=1e-4, eta=1e-3)


def test_the_environment_checks_the_spec_against_its_task():
    with pytest.raises(ValueError, match="observe='image' needs a task that perturbs an image"):
        ZOEnv("quadratic", mdp=MDPSpec(observe="image"), family_kwargs={"dim": 4})
