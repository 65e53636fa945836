"""train.ddpg_policy: the training CLI (train, validate, choose P and eta, resume) and its options."""

from __future__ import annotations

import dataclasses
import json

import pytest

import l2l
from agents import ZORL, ZORLAgent
from envs import ZOEnv
from l2l.common.cli import run_cli
from tests.agents.helpers import assert_sb3_predicts_the_project_policy
from train import ddpg_policy

#: the options of train.ddpg_policy before they were grouped: the same names (and flags), so the
#: train_config stored in older zips still compares on --resume
OPTIONS = [
    "task",
    "steps",
    "mu",
    "eta",
    "directions",
    "q",
    "zo_lstm",
    "observe",
    "reward_scale",
    "train_instances",
    "timesteps",
    "learning_rate",
    "buffer_size",
    "batch_size",
    "learning_starts",
    "train_freq",
    "gradient_steps",
    "tau",
    "gamma",
    "n_steps",
    "noise_std",
    "warm_start",
    "switch_threshold",
    "switch_window",
    "probe_q",
    "imitate",
    "imitation_loss",
    "terminate_on_success",
    "width",
    "hidden",
    "val_every",
    "val_instances",
    "val_steps",
    "policy_prob_grid",
    "eta_scale_grid",
    "select_budget",
    "select_from",
    "seed",
    "threads",
    "out",
    "checkpoint",
    "wandb",
    "wandb_project",
    "resume",
    "device",
]


def test_the_option_groups_keep_every_option_once_and_document_it():
    fields = dataclasses.fields(ddpg_policy.TrainConfig)
    assert sorted(f.name for f in fields) == sorted(OPTIONS) and len(fields) == len(OPTIONS)
    assert all(f.metadata.get("help") for f in fields)  # --help explains every option


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--observe", "iterate_trend"], "error: observe='iterate_trend' follows the noise of guided steps: "
         "use directions='guided' (--directions guided)"),
        (["--zo-lstm", "any.pt"], "error: zo_lstm='any.pt' steps the guided form's directions"),
        (["--directions", "guided", "--zo-lstm", "any.pt", "--observe", "iterate_estimate"],
         "error: observe='iterate_estimate' shows the policy the past ZO estimates"),
        (["--q", "0"], "error: q=0 must be an integer >= 1"),
    ],
)  # fmt: skip
def test_an_invalid_mdp_is_one_error_line_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(ddpg_policy.main, ["--task", "quadratic", "--wandb", "disabled", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(message) and err.count("\n") == 1


@pytest.mark.slow
def test_training_cli_saves_and_resumes(tmp_path):
    common = ["--task", "quadratic", "--steps", "10", "--val-every", "100", "--val-instances", "2",
              "--learning-starts", "50", "--probe-q", "3", "--out", str(tmp_path), "--wandb", "disabled",
              "--checkpoint", str(tmp_path / "policy.zip"), "--policy-prob-grid", "1,0.5",
              "--eta-scale-grid", "0.5,1", "--select-budget", "20"]  # fmt: skip
    summary = ddpg_policy.main([*common, "--timesteps", "200"])
    choice, eta = summary["step_options"], ZOEnv("quadratic", steps=10).mdp.eta
    assert set(choice["val_final_loss"]) == {f"P={p},eta={a * eta:.4g}" for p in (1, 0.5) for a in (0.5, 1)}
    assert choice["val_final_loss"][f"P={choice['policy_prob']:g},eta={choice['eta']:.4g}"] == min(
        choice["val_final_loss"].values()
    )
    chosen = l2l.load_optimizer(tmp_path / "policy.zip")
    assert (chosen.policy_prob, chosen.mdp.eta) == (choice["policy_prob"], choice["eta"])
    assert_sb3_predicts_the_project_policy(tmp_path / "policy.zip", l2l.make_task("quadratic", "val"))
    # --select-from: only the choice, on a trained zip; the grid multiplies the MDP's eta, not the choice
    again = ddpg_policy.main([*common, "--select-from", str(tmp_path / "policy.zip"), "--out",
                              str(tmp_path / "again"), "--checkpoint", str(tmp_path / "again.zip"),
                              "--policy-prob-grid", "0", "--eta-scale-grid", "2"])  # fmt: skip
    assert again["step_options"]["eta"] == pytest.approx(2 * eta)
    reselected = l2l.load_optimizer(tmp_path / "again.zip")
    assert (reselected.policy_prob, reselected.mdp.eta) == (0.0, pytest.approx(2 * eta))
    assert not (tmp_path / "again" / "last.zip").exists()  # nothing was trained
    assert {"best.zip", "last.zip", "last_replay.pkl", "progress.json", "policy.zip"} <= {
        p.name for p in tmp_path.iterdir()
    }
    ddpg_policy.main([*common, "--timesteps", "300", "--resume"])
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert [h["timesteps"] for h in progress["history"]] == [100, 200, 300]
    assert isinstance(l2l.load_optimizer(tmp_path / "policy.zip"), ZORL)
    with pytest.raises(ValueError, match="gamma"):
        ddpg_policy.main([*common, "--timesteps", "400", "--resume", "--gamma", "0.5"])
    # a run saved before an option existed resumes at that option's default, and only there
    saved = ZORLAgent.load(tmp_path / "last.zip", device="cpu")
    del saved.zo_rl["train_config"]["n_steps"]
    saved.save(tmp_path / "last.zip")
    with pytest.raises(ValueError, match=r"n_steps: 1 -> 3"):
        ddpg_policy.main([*common, "--timesteps", "400", "--resume", "--n-steps", "3"])
    ddpg_policy.main([*common, "--timesteps", "400", "--resume"])
    assert ZORLAgent.load(tmp_path / "last.zip", device="cpu").num_timesteps == 400
