"""The hand-designed baselines: they descend, reproduce bit for bit, read tuned values, reject bad input."""

from __future__ import annotations

import json

import pytest

import l2l
from l2l.optimizers.core import tuned as tuned_file

BASELINES = ["zo_sgd", "zo_signsgd", "zo_adam"]
# Untuned but sane settings, so these tests do not depend on the committed tuned.json.
QUADRATIC_SETTINGS = {"zo_sgd": {"delta": 5.0}, "zo_signsgd": {"delta": 0.5}, "zo_adam": {"delta": 0.5}}
ATTACK_SETTINGS = {"zo_sgd": {"delta": 10.0}, "zo_signsgd": {"delta": 2.0}, "zo_adam": {"delta": 10.0}}


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_lowers_a_quadratic(name, quadratic_task):
    opt = l2l.make_optimizer(name, q=10, mu=1e-3, **QUADRATIC_SETTINGS[name])
    traj = l2l.run(opt, quadratic_task, steps=150, seed=0)
    # f(0) is about 1.0 here and the minimum is well below 0.4 (measured: 0.25-0.35 after 150 steps).
    assert traj.losses[0] > 0.9
    assert traj.final_loss < 0.5 * traj.losses[0]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_lowers_an_mnist_attack_loss(name, mnist_family):
    task = mnist_family.instance("val", 0)
    opt = l2l.make_optimizer(name, q=20, mu=1e-3, **ATTACK_SETTINGS[name])
    traj = l2l.run(opt, task, steps=60, seed=0)
    assert traj.final_loss < traj.losses[0] - 1.0


def test_same_seed_same_minibatches_on_a_stochastic_task():
    task = l2l.make_task("binary_classification", split="val", index=0)
    make = lambda: l2l.make_optimizer("zo_sgd", q=5, delta=10.0, mu=1e-3)  # noqa: E731
    a, b = (l2l.run(make(), task, steps=20, seed=9) for _ in range(2))
    assert a.losses == b.losses


def test_tuned_values_apply_and_overrides_win(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    entry = {"params": {"delta": 7.5, "mu": 3e-4, "beta1": 0.99}}
    path.write_text(json.dumps({"format": tuned_file.TUNED_FORMAT, "tasks": {"toy": {"zo_adam": entry}}}))
    monkeypatch.setattr(tuned_file, "TUNED_PATH", path)
    opt = l2l.make_optimizer("zo_adam", task="toy", q=11)
    assert (opt.delta, opt.mu, opt.beta1, opt.q) == (7.5, 3e-4, 0.99, 11)
    assert l2l.make_optimizer("zo_adam", task="toy", delta=1.0).delta == 1.0
    assert l2l.make_optimizer("zo_adam", task="other").delta == 1.0  # class default


def test_committed_tuned_file_covers_the_baselines_on_both_tasks():
    tuned = tuned_file.load_tuned()
    for task in ("mnist_attack", "binary_classification"):
        for name in BASELINES:
            params = tuned_file.tuned_params(name, task)
            assert params["delta"] > 0 and params["mu"] > 0, (task, name)
            assert tuned["tasks"][task][name]["tuned_on"]["split"] == "val"


def test_wrong_tuned_format_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"format": 99, "tasks": {}}))
    monkeypatch.setattr(tuned_file, "TUNED_PATH", path)
    with pytest.raises(ValueError, match="format 99"):
        l2l.make_optimizer("zo_sgd", task="mnist_attack")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: l2l.make_optimizer("zo_nope"), KeyError, "unknown optimizer 'zo_nope'.*zo_adam"),
        (lambda: l2l.make_optimizer("zo_sgd", q=0), ValueError, "q=0"),
        (lambda: l2l.make_optimizer("zo_sgd", mu=0.0), ValueError, "mu=0.0"),
        (lambda: l2l.make_optimizer("zo_sgd", delta=-1.0), ValueError, "delta=-1.0"),
        (lambda: l2l.make_optimizer("zo_adam", beta1=1.0), ValueError, "beta1=1.0"),
        (lambda: l2l.make_optimizer("zo_sgd", lr=0.1), TypeError, r"no parameter\(s\) \['lr'\]"),
        (lambda: l2l.make_task("cifar_attack"), KeyError, "unknown task 'cifar_attack'.*mnist_attack"),
        (lambda: l2l.make_task("quadratic", split="dev"), ValueError, "unknown split 'dev'"),
        (lambda: l2l.make_task("quadratic", split="test", index=8), IndexError, "index=8"),
        (lambda: l2l.run(l2l.make_optimizer("zo_sgd"), l2l.make_task("quadratic"), -1), ValueError, "steps"),
        (lambda: l2l.load_optimizer("missing.pt"), FileNotFoundError, "missing.pt"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
