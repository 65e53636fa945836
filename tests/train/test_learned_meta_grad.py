"""``python -m train.learned --meta-grad tbptt|es|pes``: errors, ES/PES runs end to end, resumes on any
rank count, and ES training an optimizer with no differentiable path beyond its first query."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.common.cli import run_cli
from l2l.learned import SignHunterPrior, ZOLMom
from train import learned as train_learned


def _argv(out, iterations: str, *extra: str) -> list[str]:
    return [
        "--optimizer", "zo_lmom", "--task", "quadratic", "--steps", "8", "--iterations", iterations,
        "--options", "q=4,mu=1e-3,seed=0", "--val-every", "2", "--val-instances", "2",
        "--train-instances", "4", "--wandb", "disabled", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--meta-grad", "bogus"], "error: unknown meta-gradient estimator 'bogus'"),
        (["--meta-grad", "es", "--population", "0"], "error: population=0 must be an integer >= 1"),
        (["--meta-grad", "es", "--sigma", "0"], "error: sigma=0.0 must be a finite number > 0"),
        (["--meta-grad", "pes", "--truncation", "0"], "error: truncation=0 must be an integer >= 1"),
        (["--meta-objective", "final_loss"], "error: meta-objective 'final_loss' is measured by the oracle"),
        (["--meta-grad", "es", "--meta-objective", "nope"], "error: unknown meta-objective 'nope'"),
        (
            ["--meta-grad", "es", "--meta-objective", "queries_to_success"],
            "error: meta-objective 'queries_to_success' needs a task that defines success",
        ),
    ],
)
def test_a_bad_estimator_option_is_one_error_line_and_status_2(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_learned.main, _argv(tmp_path, "1", *extra))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and len(err.splitlines()) == 1, err


def _weights(out) -> dict[str, torch.Tensor]:
    return torch.load(out / "last.pt", weights_only=True)["trainer"]["modules"]["net"]


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["es", "pes"])
def test_oracle_only_training_resumes_bit_for_bit_on_another_rank_count(tmp_path, estimator):
    grad = ["--meta-grad", estimator, "--population", "2", "--sigma", "0.05", "--truncation", "4",
            "--meta-objective", "final_loss"]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    summary = train_learned.main(_argv(straight, "4", *grad))
    assert summary["best"]["train"]["iteration"] in (0, 2, 4)
    train_learned.main(_argv(resumed, "2", *grad, "--workers", "2"))  # 2 ranks, then resumed on 1
    train_learned.main(_argv(resumed, "4", *grad, "--resume"))
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = ZOLMom(q=4, mu=1e-3).modules()["net"].state_dict()
    assert not all(torch.equal(a[k], fresh[k]) for k in a)  # it trained
    assert isinstance(l2l.load_optimizer(straight / "best.pt"), ZOLMom)
    with pytest.raises(ValueError, match="different options"):
        train_learned.main(_argv(resumed, "4", *grad, "--resume", "--sigma", "0.1"))


@pytest.mark.slow
def test_es_trains_signhunter_priors_whole_search_through_the_oracle(tmp_path):
    # tbptt reaches only its first query (steps 1); es scores 10-query searches through the oracle alone
    # (theta sets the first query, whose loss is one of the 10 the mean log-loss averages)
    train_learned.main([
        "--optimizer", "signhunter_prior", "--task", "mnist_attack_linf", "--steps", "1", "--horizon", "10",
        "--meta-grad", "es", "--population", "2", "--sigma", "0.1", "--meta-objective", "mean_log_loss",
        "--iterations", "1", "--train-instances", "4", "--val-instances", "2", "--wandb", "disabled",
        "--out", str(tmp_path),
    ])  # fmt: skip
    theta = torch.load(tmp_path / "last.pt", weights_only=True)["trainer"]["modules"]["prior"]["theta"]
    assert theta.abs().sum() > 0  # theta starts at 0: the ES step moved it
    assert isinstance(l2l.load_optimizer(tmp_path / "best.pt"), SignHunterPrior)
