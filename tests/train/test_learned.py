"""The generic learned-optimizer path: train.learned, horizons from the family, and format-marker loading."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest
import torch

import l2l
from l2l import loading
from l2l.learned import ZOLSTM, ZOLMom, learned_names
from l2l.learned.checkpoint import checkpoint_dict
from train import learned as train_learned
from train import zo_lstm as train_zo_lstm


def _argv(out, optimizer: str, iterations: str, *extra: str) -> list[str]:
    return [
        "--optimizer", optimizer, "--task", "quadratic", "--steps", "20", "--iterations", iterations,
        "--options", "q=4,mu=1e-3,unroll=5,seed=0", "--val-every", "2", "--val-instances", "2",
        "--wandb", "disabled", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_trains_zo_lmom_saves_and_resumes_bit_for_bit(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    summary = train_learned.main(_argv(straight, "zo_lmom", "4"))
    assert set(summary["best"]) == {"train"} and summary["out"] == str(straight)
    train_learned.main(_argv(resumed, "zo_lmom", "2"))
    train_learned.main(_argv(resumed, "zo_lmom", "4", "--resume"))
    a, b = (torch.load(d / "last.pt", weights_only=True)["trainer"]["modules"]["net"]
            for d in (straight, resumed))  # fmt: skip
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(l2l.load_optimizer(straight / "best.pt"), ZOLMom)
    with pytest.raises(ValueError, match="different options"):
        train_learned.main(_argv(resumed, "zo_lmom", "4", "--resume", "--val-instances", "1"))


@pytest.mark.slow
def test_trains_the_zo_lstm_stages_through_the_generic_cli(tmp_path):
    summary = train_learned.main(_argv(tmp_path, "zo_lstm", "2,2"))
    assert set(summary["best"]) == {"update", "query"}
    stage1, best = (l2l.load_optimizer(tmp_path / name) for name in ("stage1.pt", "best.pt"))
    assert isinstance(stage1, ZOLSTM) and stage1.directions == "gaussian" and best.directions == "query"
    with pytest.raises(ValueError, match="one count >= 0 per stage"):
        train_learned.main(_argv(tmp_path, "zo_lstm", "1,2,3"))


@pytest.mark.slow
def test_a_trend_based_zo_lstm_trains_in_one_stage_on_its_own_directions(tmp_path):
    options = "q=4,mu=1e-3,unroll=5,seed=0,directions=trend,update=sgd+rnn,base_delta=2.0,trend_decay=0.9"
    argv = _argv(tmp_path, "zo_lstm", "2")
    argv[argv.index("--options") + 1] = options
    summary = train_learned.main(argv)
    assert set(summary["best"]) == {"update"}  # no QueryRNN stage: the trend replaces its directions
    best = l2l.load_optimizer(tmp_path / "best.pt")
    assert (best.directions, best.update, best.trend_decay) == ("trend", "sgd+rnn", 0.9)
    assert train_learned.parse_options("base_delta=none", ZOLSTM.config_class) == {"base_delta": None}
    with pytest.raises(ValueError, match=r"base_delta='fast' is not a valid float"):
        train_learned.parse_options("base_delta=fast", ZOLSTM.config_class)


def test_bad_options_and_names_are_named():
    with pytest.raises(ValueError, match=r"'nope=1'.*delta"):
        train_learned.LearnedTrainConfig(options="nope=1").job()
    with pytest.raises(ValueError, match=r"q='many'"):
        train_learned.LearnedTrainConfig(options="q=many").job()
    with pytest.raises(ValueError, match="steps has its own flag"):
        train_learned.LearnedTrainConfig(options="steps=3").job()
    registered = "registered learned optimizers: guided_sampler, signhunter_prior, zo_lmom, zo_lstm"
    with pytest.raises(KeyError, match=registered):
        train_learned.LearnedTrainConfig(optimizer="zo_nope")


def test_help_documents_every_field_and_every_optimizers_options(capsys):
    with pytest.raises(SystemExit):
        train_learned.main(["--help"])
    text = capsys.readouterr().out
    for f in train_learned.dataclasses.fields(train_learned.LearnedTrainConfig):
        assert "--" + f.name.replace("_", "-") in text
    for name in learned_names():
        assert f"  {name} (" in text
    assert "    meta_lr = 0.01:" in text and "    reg_lambda = 0.005:" in text


def test_horizons_come_from_the_family():
    assert train_learned.LearnedTrainConfig(task="binary_classification").steps == 500
    assert train_learned.LearnedTrainConfig(task="quadratic").steps == 200
    binary = train_zo_lstm.TrainConfig(task="binary_classification")
    assert (binary.steps, binary.val_steps) == (500, 200)  # the ZO-LSTM validates on eval.compare's 200
    assert train_zo_lstm.TrainConfig(task="mnist_attack").steps == 200


def _fake_plugin(monkeypatch, loader) -> None:
    module = types.ModuleType("fake_l2l_plugin")
    module.load = loader
    monkeypatch.setitem(sys.modules, "fake_l2l_plugin", module)
    entry = metadata.EntryPoint("fake", "fake_l2l_plugin:load", loading.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        loading.metadata, "entry_points", lambda group: [entry] if group == entry.group else []
    )


def test_loader_plugins_come_from_entry_points(tmp_path, monkeypatch):
    mine = tmp_path / "mine.bin"
    mine.write_bytes(b"FAKE-FORMAT")
    expected = l2l.make_optimizer("zo_sgd", q=2)
    _fake_plugin(monkeypatch, lambda path: expected if path.read_bytes() == b"FAKE-FORMAT" else None)
    assert l2l.load_optimizer(mine) is expected
    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    with pytest.raises(ValueError, match=r"other\.bin.*no loader plugin for this file \(tried: fake"):
        l2l.load_optimizer(other)


def test_policy_zips_load_through_the_installed_entry_point_only(monkeypatch):
    assert loading.entry_point_targets() == {"zo_rl": "agents.zo_rl:load_policy_file"}
    assert type(l2l.load_optimizer("checkpoints/zo_rl_binary.zip")).__name__ == "ZORL"
    # stale metadata (installed before the entry point existed): no fallback, a message saying what to do
    monkeypatch.setattr(loading.metadata, "entry_points", lambda group: [])
    with pytest.raises(ValueError, match=r"zo_rl_binary\.zip.*tried: none.*reinstall.*pip install -e \."):
        l2l.load_optimizer("checkpoints/zo_rl_binary.zip")


def test_format_marker_errors_name_the_problem(tmp_path):
    ckpt = checkpoint_dict(ZOLMom(q=2))
    for name, change, message in (
        ("unknown.pt", {"format": "l2l.learned/zo_nope"}, "not know: unknown learned optimizer 'zo_nope'"),
        ("other.pt", {"format": "someone-else"}, "its format marker is 'someone-else'"),
        ("legacy.pt", {"format": "l2l-zo-lstm", "format_version": 2}, "legacy marker 'l2l-zo-lstm'"),
        ("newer.pt", {"format_version": 2}, "format version 2"),
        ("training.pt", {"format": "l2l.learned.training/zo_lmom"}, "meta-training state"),
    ):
        torch.save({**ckpt, **change}, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            l2l.load_optimizer(tmp_path / name)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        l2l.load_optimizer(tmp_path / "list.pt")


@pytest.mark.slow
def test_validation_uses_at_most_the_val_split(tmp_path):
    # the default 10 val instances exceed the quadratic family's 8: all 8 are used, not an error
    argv = [
        "--optimizer", "zo_lmom", "--task", "quadratic", "--steps", "10", "--iterations", "2",
        "--options", "q=4,mu=1e-3,unroll=5,seed=0", "--val-every", "2", "--wandb", "disabled",
        "--out", str(tmp_path),
    ]  # fmt: skip
    summary = train_learned.main(argv)
    assert summary["best"]["train"]["iteration"] == 2


def test_models_must_be_surrogates_of_a_zoo():
    config = train_learned.LearnedTrainConfig
    with pytest.raises(ValueError, match=r"held-out target\(s\) \['lenet_adv'\]"):
        config(optimizer="signhunter_prior", task="mnist_attack_linf", steps=1, models="mlp,lenet_adv")
    with pytest.raises(ValueError, match="'quadratic' has no target-model zoo"):
        config(optimizer="zo_lmom", task="quadratic", models="surrogates")
    with pytest.raises(ValueError, match=r"eps=-1.0 must be > 0"):
        config(optimizer="signhunter_prior", task="mnist_attack_linf", steps=1, eps=-1.0)
    surrogates = config(
        optimizer="signhunter_prior", task="fashion_attack_linf", steps=1, models="surrogates"
    )
    assert surrogates.model_names() == ("cw", "mlp", "lenet", "wide")


@pytest.mark.slow
def test_meta_trains_on_each_surrogate_as_a_group_at_the_given_eps(tmp_path):
    # eps 0.1: small enough that the untrained all-ones query fools none of the val images (control > 0)
    out = tmp_path / "prior"
    train_learned.main([
        "--optimizer", "signhunter_prior", "--task", "mnist_attack_linf", "--eps", "0.1",
        "--models", "mlp,lenet", "--steps", "1", "--val-steps", "1", "--iterations", "2", "--val-every", "2",
        "--val-instances", "3",
        "--wandb", "disabled", "--out", str(out),
    ])  # fmt: skip
    saved = torch.load(out / "best.pt", weights_only=False)
    assert set(saved["val"]["families"]) == {"mnist_attack_linf@mlp", "mnist_attack_linf@lenet"}
    assert saved["task"]["models"] == ["mlp", "lenet"] and saved["task"]["family_options"] == {"eps": 0.1}
    assert l2l.load_optimizer(str(out / "best.pt")).classes == 10
