"""The ZO-LSTM: networks, the frozen optimizer and its variants, checkpoints, meta-training, the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import l2l
from l2l.estimators import Estimate
from l2l.learned import (  # importing l2l.learned registers the checkpoint formats and zo_lstm_untrained
    MetaConfig,
    MetaTrainer,
    load_zo_lstm,
    make_variant,
    read_checkpoint,
    save_zo_lstm,
    validate,
)
from l2l.learned.checkpoint import FORMAT_VERSION, checkpoint_dict
from l2l.learned.networks import normalize_std
from l2l.learned.optimizee_grad import optimizee_objective
from l2l.learned.sampling import guided_es_directions
from l2l.learned.zo_lstm import VARIANTS, ZOLSTM
from l2l.optimizers import tuned_params
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.zo_adam import ZOAdam
from l2l.tasks.target_models import mnist_checkpoint_path
from train import zo_lstm as train_cli

DIM, Q, STEPS, UNROLL = 5, 4, 40, 10


def tiny_config(**changes) -> MetaConfig:
    base = dict(q=Q, mu=1e-3, steps=STEPS, unroll=UNROLL, update_lr=1e-2, query_lr=1e-2, seed=0)
    return MetaConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def family():
    return l2l.make_family("quadratic", dim=DIM, sizes=(16, 4, 4))


@pytest.fixture(scope="module")
def trained(family) -> ZOLSTM:
    """A ZO-LSTM after a few meta-iterations of both stages (so neither network is at its init)."""
    trainer = MetaTrainer(tiny_config(), family.instances("train"))
    trainer.begin_stage("update")
    for _ in range(4):
        trainer.meta_step()
    trainer.begin_stage("query")
    for _ in range(4):
        trainer.meta_step()
    return trainer.frozen()


def _step(optimizer: ZOLSTM, grad: torch.Tensor, carry: dict) -> torch.Tensor:
    """The step that ``optimizer``'s update rule takes for the estimate ``grad``."""
    return optimizer.update_rule.step(optimizer.update_net, grad, carry)


def _grads(net: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: p.grad for name, p in net.named_parameters()}


@pytest.mark.parametrize("optimizee_grad", ["autograd", "zo-coordinate"])
def test_meta_gradients_reach_every_parameter(family, optimizee_grad):
    trainer = MetaTrainer(tiny_config(optimizee_grad=optimizee_grad), family.instances("train"))
    for stage, net, other in (
        ("update", trainer.optimizer.update_net, trainer.optimizer.query_net),
        ("query", trainer.optimizer.query_net, trainer.optimizer.update_net),
    ):
        trainer.begin_stage(stage)
        trainer.meta_step()
        grads = _grads(net)
        assert all(g is not None and bool((g != 0).any()) for g in grads.values()), (stage, grads)
        if stage == "query":  # the frozen UpdateRNN gets no meta-gradient at all
            assert all(g is None or not bool((g != 0).any()) for g in _grads(other).values())


def test_update_rnn_frozen_in_stage_two(family):
    trainer = MetaTrainer(tiny_config(), family.instances("train"))
    trainer.begin_stage("update")
    trainer.meta_step()
    trainer.begin_stage("query")
    update_before = {k: v.clone() for k, v in trainer.optimizer.update_net.state_dict().items()}
    query_before = {k: v.clone() for k, v in trainer.optimizer.query_net.state_dict().items()}
    for _ in range(3):
        trainer.meta_step()
    update_after = trainer.optimizer.update_net.state_dict()
    assert all(torch.equal(update_before[k], update_after[k]) for k in update_before)
    query_after = trainer.optimizer.query_net.state_dict()
    assert any(not torch.equal(query_before[k], query_after[k]) for k in query_before)


def test_mean_meta_loss_is_the_sum_divided_by_the_weight_total(family):
    stats, grads = {}, {}
    for scale in ("sum", "mean"):
        trainer = MetaTrainer(tiny_config(meta_loss_scale=scale, clip=1e30), family.instances("train"))
        trainer.begin_stage("update")
        stats[scale] = trainer.meta_step()
        grads[scale] = {k: g.clone() for k, g in _grads(trainer.optimizer.update_net).items()}
    total_weight = STEPS * (STEPS + 1) / 2
    assert stats["mean"]["meta_loss"] == pytest.approx(stats["sum"]["meta_loss"] / total_weight, rel=1e-5)
    assert stats["mean"]["loss"] == stats["sum"]["loss"]  # same trajectory: only the scale differs
    for name, g in grads["sum"].items():
        torch.testing.assert_close(grads["mean"][name] * total_weight, g, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="meta_loss_scale='avg' must be one of mean, sum"):
        tiny_config(meta_loss_scale="avg")


@pytest.mark.slow
def test_meta_training_lowers_val_loss(family):
    trainer = MetaTrainer(tiny_config(), family.instances("train"))
    trainer.begin_stage("update")
    val_tasks = family.instances("val")
    before = validate(trainer.frozen(), val_tasks, STEPS, seed=0)
    for _ in range(24):
        trainer.meta_step()
    after = validate(trainer.frozen(), val_tasks, STEPS, seed=0)
    # measured (seed 0): final 0.57 -> 0.25, weighted 0.57 -> 0.30
    # (seeds 1, 2: final 0.58 -> 0.23 and 0.64 -> 0.24)
    assert after.final_loss_mean < 0.75 * before.final_loss_mean
    assert after.weighted_loss_mean < 0.75 * before.weighted_loss_mean


def test_save_load_run_gives_identical_trajectory(trained, tmp_path):
    path = save_zo_lstm(tmp_path / "opt.pt", trained, train_config={"seed": 0}, val={"final_loss_mean": 1.0})
    loaded = l2l.load_optimizer(path)
    assert isinstance(loaded, ZOLSTM) and loaded.config() == trained.config()
    task = l2l.make_task("quadratic", split="test", index=1, dim=DIM)
    a, b = l2l.run(trained, task, steps=30, seed=7), l2l.run(loaded, task, steps=30, seed=7)
    assert a.losses == b.losses and torch.equal(a.x, b.x)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["version"] == l2l.__version__ and ckpt["val"] == {"final_loss_mean": 1.0}


def test_input_scale_feeds_the_scaled_estimate_and_stays_with_the_checkpoint(tmp_path):
    plain, scaled = ZOLSTM(input_scale=1.0), ZOLSTM(input_scale=30.0)  # same init_seed: same weights
    grad = torch.linspace(-0.05, 0.05, DIM)
    carry_a, carry_b = plain.initial_carry(DIM), scaled.initial_carry(DIM)
    with torch.no_grad():
        expected, _ = plain.update_net(30.0 * grad, (carry_a["update_h"], carry_a["update_c"]))
        assert torch.allclose(_step(scaled, grad, carry_b), expected, rtol=0, atol=0)
    path = save_zo_lstm(tmp_path / "s.pt", scaled, train_config={"seed": 0}, val={})
    assert l2l.load_optimizer(path).input_scale == 30.0
    with pytest.raises(ValueError, match="input_scale"):
        scaled.with_options(input_scale=1.0)  # the weights were trained on the scaled input
    with pytest.raises(ValueError, match=r"input_scale=0\.0"):
        ZOLSTM(input_scale=0.0)


def test_input_norm_feeds_adams_statistics_and_stays_with_the_checkpoint(tmp_path):
    plain = ZOLSTM()
    grads = [torch.linspace(-0.05, 0.05, DIM), torch.linspace(0.02, -0.06, DIM)]
    for norm in ("rms", "adam"):
        normed = ZOLSTM(input_norm=norm)  # same init_seed: the same weights as ``plain``
        carry, reference = normed.initial_carry(DIM), plain.initial_carry(DIM)
        state = (reference["update_h"], reference["update_c"])
        m, v = torch.zeros(DIM), torch.zeros(DIM)
        with torch.no_grad():
            for t, g in enumerate(grads, start=1):  # Adam's moments, bias-corrected, by hand
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                rms = (v / (1 - 0.999**t)).sqrt() + 1e-8
                fed = g / rms if norm == "rms" else m / (1 - 0.9**t) / rms
                expected, state = plain.update_net(fed, state)
                assert torch.allclose(_step(normed, g, carry), expected, rtol=1e-6, atol=1e-7)
        path = save_zo_lstm(tmp_path / f"{norm}.pt", normed, train_config={"seed": 0}, val={})
        assert l2l.load_optimizer(path).input_norm == norm
        with pytest.raises(ValueError, match="input_norm"):
            normed.with_options(input_norm="none")
    with pytest.raises(ValueError, match="input_norm"):
        ZOLSTM(input_norm="layer")


def test_adam_base_starts_as_zo_adam_and_learns_a_correction_in_adam_steps(tmp_path):
    based = ZOLSTM(update="adam+rnn", base_delta=2.0, base_beta1=0.99, base_beta2=0.99)
    adam = ZOAdam(delta=2.0, beta1=0.99, beta2=0.99)
    x = torch.linspace(-1.0, 1.0, DIM)
    carry, state = based.initial_carry(DIM), ZOState(x=x.clone(), rng=torch.Generator())
    adam.init_slots(state)
    grads = [torch.linspace(-0.05, 0.05, DIM), torch.linspace(0.02, -0.06, DIM), torch.full((DIM,), 0.01)]
    with torch.no_grad():
        for g in grads:  # the untrained head is zero: every step is ZO-Adam's on the same estimate
            x = x + _step(based, g, carry)
            state.x = adam.update(state, Estimate(g, None, torch.zeros(0, DIM), 0), lr=2.0 / DIM)
            state.step += 1
            assert torch.allclose(x, state.x, atol=1e-6)  # float32 bias corrections: rounding apart
        based.update_net.head.weight.fill_(0.1)  # a correction, in units of the base step lr = delta / d
        carry = based.initial_carry(DIM)
        out, _ = based.update_net(grads[0], based.update_net.initial_state(DIM))
        step = _step(based.with_options(alpha=2.0), grads[0], carry)
        assert torch.allclose(step, (2.0 / DIM) * (2.0 * out - grads[0].sign()), atol=1e-6)
    path = save_zo_lstm(tmp_path / "based.pt", based, train_config={"seed": 0}, val={})
    loaded = l2l.load_optimizer(path)
    assert (loaded.update, loaded.base_delta, loaded.base_beta2) == ("adam+rnn", 2.0, 0.99)
    with pytest.raises(ValueError, match="base_delta"):
        based.with_options(base_delta=3.0)  # the correction was learned on this base
    with pytest.raises(ValueError, match="update='lion' must be one of rnn, sgd, adam, sgd\\+rnn"):
        ZOLSTM(update="lion")
    with pytest.raises(ValueError, match=r"base_delta=0"):
        ZOLSTM(update="adam+rnn", base_delta=0.0)


def test_the_untrained_trend_based_zo_lstm_takes_zo_trends_steps_draw_for_draw(tmp_path):
    task = l2l.make_task("binary_classification", split="val", index=0)
    options = {"delta": 50.0, "strength": 1.0, "decay": 0.9, "mu": 0.01, "q": 6}
    trend = l2l.make_optimizer("zo_trend", **options)
    based = ZOLSTM(
        q=6, mu=0.01, directions="trend", update="sgd+rnn", base_delta=50.0, trend_strength=1.0,
        trend_decay=0.9,
    )  # fmt: skip
    assert based.queries_per_step(task.dim) == 7
    oracle, state = l2l.Oracle(task), trend.init(task.x0(), seed=4)
    x, carry, rng = task.x0(), based.initial_carry(task.dim), torch.Generator().manual_seed(4)
    rng.set_state(state.rng.get_state())
    with torch.no_grad():
        for _ in range(5):  # the head starts at zero: the same directions, trend and step as ZO-Trend
            state = trend.step(state, oracle)
            x = based.advance(x, carry, oracle, rng, use_query=False).x
            assert torch.allclose(x, state.x, rtol=1e-6, atol=1e-7)
            assert torch.allclose(carry["trend"], state.slots["trend"], rtol=1e-6, atol=1e-8)
        assert float(carry["trend"].abs().max()) > 0
        based.update_net.head.weight.fill_(0.1)  # a correction in units of the base step lr = delta / d
        g = torch.linspace(-0.05, 0.05, task.dim)
        out, _ = based.update_net(g, based.update_net.initial_state(task.dim))
        step = _step(based, g, based.initial_carry(task.dim))
        assert torch.allclose(step, (50.0 / task.dim) * (out - g), atol=1e-7)
    loaded = l2l.load_optimizer(save_zo_lstm(tmp_path / "trend.pt", based, train_config={"seed": 0}, val={}))
    assert (loaded.directions, loaded.update, loaded.trend_decay) == ("trend", "sgd+rnn", 0.9)
    with pytest.raises(ValueError, match="trend_decay"):
        based.with_options(trend_decay=0.5)  # the correction was learned on these directions
    with pytest.raises(ValueError, match=r"trend_decay=1\.0"):
        ZOLSTM(directions="trend", trend_decay=1.0)


def test_train_cli_takes_the_trend_base_from_the_tasks_tuned_zo_trend():
    cfg = train_cli.TrainConfig(
        task="binary_classification", update="sgd+rnn", directions="trend", query_iterations=0
    )
    tuned = tuned_params("zo_trend", "binary_classification")
    assert (cfg.base_delta, cfg.trend_strength, cfg.trend_decay) == (
        tuned["delta"], tuned["strength"], tuned["decay"]
    )  # fmt: skip
    assert cfg.base_beta1 is None  # the sgd base has no moments
    sgd = train_cli.TrainConfig(task="binary_classification", update="sgd+rnn")
    assert sgd.base_delta == tuned_params("zo_sgd", "binary_classification")["delta"]
    assert sgd.trend_decay is None
    with pytest.raises(ValueError, match="pass --query-iterations 0"):
        train_cli.TrainConfig(task="binary_classification", directions="trend")
    with pytest.raises(ValueError, match="--trend-strength, --trend-decay"):
        train_cli.TrainConfig(
            task="quadratic,binary_classification", steps=200, directions="trend", query_iterations=0
        )


def test_train_cli_takes_the_adam_base_from_the_tasks_tuned_zo_adam():
    cfg = train_cli.TrainConfig(task="binary_classification", update="adam+rnn", base_beta1=0.9)
    tuned = tuned_params("zo_adam", "binary_classification")
    assert (cfg.base_delta, cfg.base_beta1, cfg.base_beta2) == (tuned["delta"], 0.9, tuned["beta2"])
    assert train_cli.TrainConfig(task="binary_classification").base_delta is None  # no base, nothing filled
    with pytest.raises(ValueError, match="--base-delta"):
        train_cli.TrainConfig(task="quadratic,binary_classification", steps=200, update="adam+rnn")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_spends_q_plus_one_queries_per_step(trained, variant):
    optimizer = make_variant(trained, variant)
    assert optimizer.queries_per_step(DIM) == Q + 1
    traj = l2l.run(optimizer, l2l.make_task("quadratic", split="test", index=0, dim=DIM), steps=12, seed=3)
    assert [b - a for a, b in zip(traj.queries, traj.queries[1:], strict=False)] == [Q + 1] * 12


def test_query_prob_zero_never_uses_the_query_covariance(trained):
    task = l2l.make_task("quadratic", split="test", index=2, dim=DIM)
    no_query = l2l.run(make_variant(trained, "zo_lstm_no_query"), task, steps=25, seed=11)
    p0 = trained.frozen_copy(query_prob=0.0)
    with torch.no_grad():
        p0.query_net.head.weight.mul_(50.0)  # a wildly anisotropic covariance, were it ever used
    assert l2l.run(p0, task, steps=25, seed=11).losses == no_query.losses
    p1 = trained.frozen_copy(query_prob=1.0)
    assert l2l.run(p1, task, steps=25, seed=11).losses != no_query.losses  # so the check can fail


def test_variants_change_what_they_say(trained):
    assert make_variant(trained, "zo_lstm_no_update").update == "sgd"
    guided = make_variant(trained, "zo_lstm_guided_es")
    assert guided.directions == "guided_es" and guided.guided_alpha == 0.5
    untrained = make_variant(trained, "zo_lstm_untrained")
    fresh = ZOLSTM(**trained.config())
    for a, b in zip(untrained.update_net.parameters(), fresh.update_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(untrained.update_net.parameters(), trained.update_net.parameters(), strict=True)
    )
    registered = l2l.make_optimizer("zo_lstm_untrained", q=Q)
    assert registered.queries_per_step(DIM) == Q + 1
    with pytest.raises(KeyError, match="zo_lstm_no_query"):
        make_variant(trained, "zo_lstm_bogus")


def test_sigma_normalization_and_guided_directions():
    std = torch.tensor([0.1, 2.0, 0.5, 1.0])
    assert torch.isclose(normalize_std(std, "trace").pow(2).sum(), torch.tensor(4.0))
    assert torch.isclose(normalize_std(std, "frobenius").pow(4).sum(), torch.tensor(4.0))
    g = torch.Generator().manual_seed(0)
    surrogates = torch.randn(50, 2, generator=g)
    u = guided_es_directions(6, torch.Generator().manual_seed(1), surrogates)
    z = torch.randn(6, 50, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(u.norm(dim=1), z.norm(dim=1))  # per-direction norm kept (papers/002 app. B)
    assert torch.equal(guided_es_directions(6, torch.Generator().manual_seed(1), torch.zeros(50, 2)), z)


def test_zo_coordinate_gradient_matches_autograd():
    task = l2l.make_task("quadratic", split="test", index=0, dim=DIM)
    x = torch.randn(1, DIM, requires_grad=True)
    optimizee_objective(task, None, "zo-coordinate", coord_mu=1e-3)(x).sum().backward()
    assert torch.allclose(x.grad[0], task.gradient(x.detach()[0]), atol=1e-3)


def test_stochastic_task_meta_step():
    family = l2l.make_family("binary_classification", dim=8, n=64, batch_size=16, sizes=(3, 2, 2))
    trainer = MetaTrainer(tiny_config(steps=20, unroll=10), family.instances("train"))
    trainer.begin_stage("query")
    stats = trainer.meta_step()
    assert stats["reg"] > 0 and 0 < stats["loss"] < 1


def test_checkpoint_errors(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint at"):
        l2l.load_optimizer(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="train one with"):
        load_zo_lstm(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    corrupt.write_bytes(noise.numpy().tobytes())
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        l2l.load_optimizer(corrupt)
    with pytest.raises(ValueError, match="target-model checkpoint"):
        l2l.load_optimizer(mnist_checkpoint_path())
    for name, change, message in (
        ("version.pt", {"format_version": FORMAT_VERSION + 1}, "format version"),
        ("partial.pt", {"modules": {"update_rnn": {}}}, "does not describe a valid ZO-LSTM"),
        ("hidden.pt", {"config": {**trained.config(), "hidden": 3}}, "does not describe a valid ZO-LSTM"),
        ("option.pt", {"config": {**trained.config(), "q": 0}}, "q=0"),
    ):
        torch.save({**checkpoint_dict(trained), **change}, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            load_zo_lstm(tmp_path / name)


def _cli_argv(out, *extra: str) -> list[str]:
    return [
        "--task", "quadratic", "--q", str(Q), "--mu", "1e-3", "--steps", "20", "--unroll", "5",
        "--update-lr", "1e-2", "--query-lr", "1e-2", "--val-every", "2", "--val-instances", "2",
        "--wandb", "disabled", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_cli_trains_saves_and_resumes_bit_for_bit(tmp_path):
    straight = tmp_path / "straight"
    train_cli.main(_cli_argv(straight, "--update-iterations", "4", "--query-iterations", "4"))
    resumed = tmp_path / "resumed"
    train_cli.main(_cli_argv(resumed, "--update-iterations", "4", "--query-iterations", "2"))
    train_cli.main(_cli_argv(resumed, "--update-iterations", "4", "--query-iterations", "4", "--resume"))
    a, b = (torch.load(d / "last.pt", weights_only=True)["trainer"] for d in (straight, resumed))
    for net in ("update_rnn", "query_rnn"):
        assert all(torch.equal(a["modules"][net][k], b["modules"][net][k]) for k in a["modules"][net])
    for name in ("best.pt", "stage1.pt"):
        assert isinstance(l2l.load_optimizer(straight / name), ZOLSTM)
    with pytest.raises(ValueError, match="different options"):
        train_cli.main(_cli_argv(resumed, "--q", "3", "--resume"))


@pytest.mark.slow
def test_cli_resumes_a_run_saved_before_meta_loss_scale_existed(tmp_path):
    out = tmp_path / "old"
    old_scale = ("--query-iterations", "0", "--meta-loss-scale", "sum")
    train_cli.main(_cli_argv(out, "--update-iterations", "2", *old_scale))
    state = torch.load(out / "last.pt", weights_only=True)
    del state["config"]["meta_loss_scale"]  # as a run saved before the field existed
    torch.save(state, out / "last.pt")
    with pytest.raises(ValueError, match="meta_loss_scale: 'sum' -> 'mean'"):
        train_cli.main(_cli_argv(out, "--update-iterations", "4", "--query-iterations", "0", "--resume"))
    train_cli.main(_cli_argv(out, "--update-iterations", "4", *old_scale, "--resume"))
    history = json.loads((out / "history.json").read_text())
    assert [record["iteration"] for record in history] == [0, 2, 4]  # continued, not restarted


@pytest.mark.slow
def test_cli_resumes_a_run_saved_with_the_old_update_base_field(tmp_path):
    out = tmp_path / "old"
    based = ("--query-iterations", "0", "--update", "sgd+rnn", "--base-delta", "2.0")
    train_cli.main(_cli_argv(out, "--update-iterations", "2", *based))
    state = torch.load(out / "last.pt", weights_only=True)
    del state["config"]["update"]
    state["config"]["update_base"] = "sgd"  # as a run saved before update_base became update='sgd+rnn'
    torch.save(state, out / "last.pt")
    with pytest.raises(ValueError, match="update: 'sgd\\+rnn' -> 'adam\\+rnn'"):
        adam = ("--query-iterations", "0", "--update", "adam+rnn", "--base-delta", "2.0")
        train_cli.main(_cli_argv(out, "--update-iterations", "4", *adam, "--resume"))
    train_cli.main(_cli_argv(out, "--update-iterations", "4", *based, "--resume"))
    history = json.loads((out / "history.json").read_text())
    assert [record["iteration"] for record in history] == [0, 2, 4]  # continued, not restarted


@pytest.mark.slow
def test_cli_selects_the_update_scale_on_val(tmp_path):
    out = tmp_path / "alpha"
    summary = train_cli.main(_cli_argv(out, "--update-iterations", "3", "--query-iterations", "0",
                                       "--alpha-grid", "0.25,1,4"))  # fmt: skip
    tried = summary["alpha"]["val_weighted_loss"]
    assert set(tried) == {"0.25", "1.0", "4.0"}
    best = min(tried, key=tried.get)
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["config"]["alpha"] == float(best) == summary["alpha"]["alpha"]
    assert ckpt["val"]["alpha_grid"] == tried and ckpt["val"]["weighted_loss_mean"] == tried[best]
    assert len(set(tried.values())) == 3  # the scale changes what the optimizer does


@pytest.mark.slow
def test_cli_with_no_iterations_scores_the_given_weights_and_chooses_alpha(tmp_path):
    trained = tmp_path / "trained"
    train_cli.main(_cli_argv(trained, "--update-iterations", "3", "--query-iterations", "0",
                             "--alpha-grid", ""))  # fmt: skip
    moved = tmp_path / "moved"  # the transfer study: given weights, val of another family, alpha only
    given = ("--init-from", str(trained / "best.pt"), "--alpha-grid", "0.5,2")
    summary = train_cli.main(_cli_argv(moved, "--update-iterations", "0", "--query-iterations", "0", *given))
    source, ckpt = read_checkpoint(trained / "best.pt"), read_checkpoint(moved / "best.pt")
    for name, weights in source["modules"].items():
        assert all(torch.equal(w, ckpt["modules"][name][k]) for k, w in weights.items())  # untouched
    assert ckpt["config"]["alpha"] == summary["alpha"]["alpha"] in (0.5, 2.0)
    assert json.loads((moved / "history.json").read_text())[0]["iteration"] == 0


def test_cli_help_lists_every_field(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(train_cli.TrainConfig):
        assert "--" + f.name.replace("_", "-") in text


def test_compare_specs_bring_variants_and_the_untrained_control(trained, tmp_path, monkeypatch):
    from eval.specs import build_optimizers, parse_optimizers

    path = save_zo_lstm(tmp_path / "zo_lstm_mnist.pt", trained, train_config={"seed": 0}, val={})
    specs = parse_optimizers(f"mine={path},abl={path}#no_query", task="quadratic", q=4)
    assert [s.label for s in specs] == ["mine", "mine_untrained", "abl"]
    built = dict(build_optimizers(specs))
    assert built["abl"].directions == "gaussian" and built["mine"].directions == "query"
    assert torch.equal(
        built["abl"].update_net.state_dict()["head.weight"], trained.update_net.state_dict()["head.weight"]
    )
    untrained = built["mine_untrained"]
    assert untrained.config() == built["mine"].config()
    pairs = zip(untrained.update_net.parameters(), trained.update_net.parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)
    monkeypatch.setenv("L2L_CHECKPOINTS", str(tmp_path))
    (shipped, control) = parse_optimizers("zo_lstm", task="mnist_attack", q=20)
    assert shipped.source == f"{path}#zo_lstm" and control.label == "zo_lstm_untrained"
    with pytest.raises(ValueError, match="unknown ZO-LSTM variant"):
        parse_optimizers(f"x={path}#sideways", task="quadratic", q=4)
    with pytest.raises(KeyError, match="no ZO-LSTM checkpoint ships for task 'quadratic'"):
        parse_optimizers("zo_lstm_no_query", task="quadratic", q=4)
