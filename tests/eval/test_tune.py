"""eval.tune: searches on val only, records the best candidate, and make_optimizer reads it back."""

from __future__ import annotations

import json
import warnings

import pytest

import l2l
from eval import tune
from l2l.learned.meta import validate
from l2l.optimizers.core import tuned as tuned_file
from l2l.optimizers.core.search_spaces import space_fingerprint
from l2l.tasks.quadratic import QuadraticFamily


@pytest.fixture
def tuned_path(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    monkeypatch.setattr(tuned_file, "TUNED_PATH", path)
    return path


@pytest.mark.slow
def test_tune_records_the_best_val_candidate_and_make_optimizer_uses_it(tuned_path, monkeypatch):
    splits = []
    original = QuadraticFamily.instances

    def spy(self, split, limit=None):
        splits.append(split)
        return original(self, split, limit)

    monkeypatch.setattr(QuadraticFamily, "instances", spy)
    args = ["--task", "quadratic", "--methods", "zo_sgd,zo_adam", "--instances", "2", "--steps", "15"]
    results = tune.main([*args, "--q", "4", "--mu-grid", "1e-3,1e-2"])
    assert splits == ["val"]
    data = json.loads(tuned_path.read_text())
    grids = tune.read_grids(tuned_path.with_name("grids.jsonl"))  # beside the tuned file, not in docs/
    for name in ("zo_sgd", "zo_adam"):
        entry, grid = data["tasks"]["quadratic"][name], grids["quadratic", name]["grid"]
        assert "grid" not in entry  # tuned.json ships the chosen values alone
        best = min(grid, key=lambda row: row["val_final_loss"])
        assert entry["params"] == best["params"] == results[name]["params"]
        on = entry["tuned_on"]
        assert (on["split"], on["instances"], on["mu_grid"]) == ("val", 2, "1e-3,1e-2")
        assert (
            on["fingerprint"]
            == space_fingerprint(name, "1e-3,1e-2")
            == grids["quadratic", name]["tuned_on"]["fingerprint"]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # tuned under today's space: no staleness warning
            opt = l2l.make_optimizer(name, task="quadratic")
        assert opt.delta == best["params"]["delta"] and opt.q == 4
    adam_keys = {k for row in grids["quadratic", "zo_adam"]["grid"] for k in row["params"]}
    assert {"delta", "mu", "beta1", "beta2"} <= adam_keys


def test_search_spaces_cover_every_registered_method():
    for name in l2l.optimizer_names():
        if name == "zo_lstm_untrained":
            continue
        stages = tune.search_space(name)
        assert stages, name
        params = tune.start_params(name, tune.TuneConfig(q=20))
        assert all(key in params for stage in stages for key in stage.keys), name


def test_relative_stage_refines_around_the_current_value():
    cfg = tune.TuneConfig()
    rows = tune.candidates(tune.refine("delta"), {"delta": 4.0}, cfg)
    assert [r["delta"] for r in rows] == [4.0 * f for f in (1.0, *tune.LINEAR_FACTORS)]
    assert [r["mu"] for r in tune.candidates(tune.MU_STAGE, {"mu": 1.0}, cfg)] == [
        1e-4,
        3e-4,
        1e-3,
        3e-3,
        1e-2,
    ]


def test_a_task_that_reports_its_best_iterate_is_tuned_and_validated_by_it(monkeypatch):
    tasks = QuadraticFamily().instances("val", limit=2)
    cfg = tune.TuneConfig(task="quadratic", methods="zo_sgd", instances=2, steps=6, write=False)
    diverging = {"delta": 400.0, "q": 2}  # steps far past the minimum: the last loss is the worst
    last = tune.score("zo_sgd", diverging, tasks, cfg)["val_final_loss"]
    monkeypatch.setattr(type(tasks[0]), "reports_best_seen", True)
    best = tune.score("zo_sgd", diverging, tasks, cfg)["val_final_loss"]
    start = [float(t.loss(t.x0().unsqueeze(0))[0]) for t in tasks]  # a diverging run's best is its start
    assert best == pytest.approx(sum(start) / 2, rel=1e-6) and best < last
    val = validate(l2l.make_optimizer("zo_sgd", **diverging), tasks, steps=6)  # meta-training's selection
    assert val.final_loss_mean == pytest.approx(sum(start) / 2, rel=1e-6)
    assert val.final_loss_mean < sum(curve[-1] for curve in (t.losses for t in val.trajectories)) / 2
    curve = val.loss_curve_mean  # best so far at every step, so alpha's t-weighted choice reads it too
    assert curve == sorted(curve, reverse=True) and val.weighted_loss_mean <= curve[0]
