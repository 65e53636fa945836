"""Meta-gradient estimators: ES against the true gradient, PES unbiased where truncated ES is not,
sharded equal to serial, and bit-exact resumes (l2l.learned.meta_grad)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

import l2l
from l2l.common import distributed
from l2l.learned import LearnedConfig, LearnedOptimizer, MetaTrainer, Stage, TrainStep
from l2l.learned.meta_grad import MetaGradConfig, objective_class
from l2l.learned.meta_grad.objectives import FAILURE_FACTOR, Horizon
from l2l.optimizers.core.base import ZOState
from l2l.oracle import Oracle


class Shift(nn.Module):
    """The learned drift w [dim]."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        self.w = nn.Parameter(0.5 * torch.randn(dim, generator=torch.Generator().manual_seed(seed)))


@dataclass
class Drift(LearnedOptimizer):
    """A linear system as a learned optimizer: x_{t+1} = a x_t + w, one (counted) query per step.

    With a quadratic task every meta-objective here is quadratic in w, so the smoothed gradient that ES
    estimates is the true one, and truncated BPTT over the whole run gives that true gradient.
    """

    dim: int = 3
    a: float = 0.8
    seed: int = 0
    net: Shift = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.net = Shift(self.dim, self.seed)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def initial_carry(self, dim: int) -> dict[str, torch.Tensor]:
        return {}

    def train_step(self, x, carry, f, rng, project) -> TrainStep:  # type: ignore[no-untyped-def]
        return TrainStep(x=project(self.a * x + self.net.w))

    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        return (Stage("train", ("net",), 0.05),)

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        with torch.no_grad():
            state.x = oracle.project(self.a * state.x + self.net.w)
            oracle(state.x.unsqueeze(0))  # the step's one query (its value is not needed)
        state.step += 1
        return state

    def queries_per_step(self, dim: int) -> int:
        return 1


@dataclass
class DriftConfig(LearnedConfig):
    dim: int = 3
    a: float = 0.8

    def new_optimizer(self) -> Drift:
        return Drift(dim=self.dim, a=self.a, seed=self.seed)


def _tasks(dim: int, count: int = 1) -> list:
    return l2l.make_family("quadratic", dim=dim, sizes=(count, 1, 1)).instances("train")


def _grad(trainer: MetaTrainer) -> torch.Tensor:
    """The estimator's meta-gradient at the current weights (no Adam step)."""
    assert trainer.meta_opt is not None
    trainer.meta_opt.zero_grad(set_to_none=True)
    trainer.estimator.gradient(trainer)
    return trainer.optimizer.modules()["net"].w.grad.detach().double().clone()


def _true_gradient(config: DriftConfig, tasks: list) -> torch.Tensor:
    """Full BPTT (one window of all the steps) of the t-weighted mean loss: its exact gradient."""
    trainer = MetaTrainer(DriftConfig(**{**config.__dict__, "unroll": config.steps}), tasks)
    trainer.begin_stage("train")
    return _grad(trainer)


def test_es_estimates_a_quadratic_meta_objectives_gradient():
    # steps = 1 and a = 0: the run ends at x_1 = w, so final_loss = f(w), a quadratic in the 20 weights
    config, tasks = DriftConfig(dim=20, a=0.0, steps=1, unroll=1), _tasks(20)
    truth = _true_gradient(config, tasks)  # weighted_loss of one step is f(x_1): the same objective
    trainer = MetaTrainer(
        config, tasks, MetaGradConfig("es", population=200, sigma=0.1, objective="final_loss")
    )
    trainer.begin_stage("train")
    estimate = _grad(trainer)
    cosine = float(torch.nn.functional.cosine_similarity(estimate, truth, dim=0))
    # eps eps^T averaged over n = 200 pairs in d = 20: cosine about sqrt(n / (n + d)) = 0.95
    assert cosine > 0.9, cosine
    weak = MetaTrainer(config, tasks, MetaGradConfig("es", population=2, sigma=0.1, objective="final_loss"))
    weak.begin_stage("train")
    assert float(torch.nn.functional.cosine_similarity(_grad(weak), truth, dim=0)) < cosine


def _episode_estimates(estimator: str, config: DriftConfig, tasks: list, episodes: int) -> torch.Tensor:
    """Per episode, the sum over its truncations of the estimates (theta held fixed): [episodes, dim]."""
    grad = MetaGradConfig(estimator, population=4, sigma=0.1, truncation=2, objective="weighted_loss")
    trainer = MetaTrainer(config, tasks, grad)
    trainer.begin_stage("train")
    per_episode = config.steps // grad.truncation
    sums = torch.zeros(episodes, config.dim, dtype=torch.float64)
    for k in range(episodes * per_episode):
        sums[k // per_episode] += _grad(trainer)
        trainer.estimator.advance(trainer)
        trainer.iteration += 1  # fresh noise, the weights unchanged
    return sums


@pytest.mark.slow
def test_pes_is_unbiased_on_an_unrolled_linear_system_and_truncated_es_is_not():
    # x_{t+1} = 0.8 x_t + w on a 3-d quadratic, 8 steps in 4 truncations of 2; the whole run's t-weighted
    # mean loss is quadratic in w, so its true gradient is full BPTT's and ES smoothing adds no bias
    config, tasks = DriftConfig(dim=3, a=0.8, steps=8, unroll=2), _tasks(3)
    truth = _true_gradient(config, tasks)
    pes = _episode_estimates("pes", config, tasks, episodes=150)
    mean, se = pes.mean(dim=0), pes.std(dim=0) / pes.shape[0] ** 0.5
    assert ((mean - truth).abs() <= 4 * se).all(), (mean, truth, se)  # within 4 SE (1.1 SE measured)
    tes = _episode_estimates("tes", config, tasks, episodes=150)
    t_mean, t_se = tes.mean(dim=0), tes.std(dim=0) / tes.shape[0] ** 0.5
    assert ((t_mean - truth).abs() > 10 * t_se).all(), (t_mean, truth, t_se)  # visibly biased (16-27 SE)


def _flat(trainer: MetaTrainer) -> torch.Tensor:
    return torch.cat(
        [p.detach().reshape(-1) for m in trainer.optimizer.modules().values() for p in m.parameters()]
    )


def _trainer(estimator: str) -> MetaTrainer:
    grad = MetaGradConfig(estimator, population=3, sigma=0.1, truncation=2, objective="final_loss")
    trainer = MetaTrainer(DriftConfig(dim=4, steps=4, unroll=2), _tasks(4, count=5), grad)
    trainer.begin_stage("train")
    return trainer


def _steps(trainer: MetaTrainer, count: int) -> list[dict]:
    return [trainer.meta_step() for _ in range(count)]


def _roundtrip(state: dict) -> dict:
    """A resume file's trip: torch.save, then torch.load with weights_only as train.learned loads it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


ESTIMATORS = ("es", "pes", "tes")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_resume_is_bit_exact(estimator):
    straight = _trainer(estimator)
    stats = _steps(straight, 5)
    first = _trainer(estimator)
    _steps(first, 2)
    resumed = _trainer(estimator)
    resumed.load_state_dict(_roundtrip(first.state_dict()))
    assert _steps(resumed, 3) == stats[2:]
    assert torch.equal(_flat(resumed), _flat(straight))
    assert not torch.equal(_flat(straight), _flat(_trainer(estimator)))  # it did train


def _two_rank_body(estimator: str) -> dict:
    torch.set_num_threads(1)
    trainer = _trainer(estimator)
    _steps(trainer, 2)
    return {"weights": _flat(trainer), "state": trainer.state_dict(), "world": distributed.world_size()}


@pytest.mark.parametrize("estimator", ["es", "pes"])
@pytest.mark.slow
def test_a_sharded_meta_step_is_the_serial_one_and_resumes_on_one_rank(estimator):
    ranked = distributed.launch(_two_rank_body, estimator, workers=2)
    assert ranked["world"] == 2
    serial = _trainer(estimator)
    _steps(serial, 2)
    assert torch.equal(ranked["weights"], _flat(serial))  # bit for bit: members, not ranks, own the seeds
    resumed = _trainer(estimator)  # the 2-rank state continued on 1 rank
    resumed.load_state_dict(_roundtrip(ranked["state"]))
    assert _steps(resumed, 2) == _steps(serial, 2)
    assert torch.equal(_flat(resumed), _flat(serial))


def test_objectives_score_prefixes_and_failures():
    horizon = Horizon(steps=4, budget=40)
    losses, queries = [4.0, 3.0, 2.0, 1.0, 0.5], [0, 10, 20, 30, 40]
    assert objective_class("final_loss").value(losses, queries, None, horizon) == 0.5
    assert objective_class("weighted_loss").value(losses, queries, None, horizon) == pytest.approx(
        (3 + 4 + 3 + 2) / 10
    )
    assert objective_class("queries_to_success").value(losses, queries, None, horizon) == FAILURE_FACTOR * 40
    assert objective_class("queries_to_success").value(losses, queries, 20, horizon) == 20
    assert objective_class("success_auc").value(losses, queries, 10, horizon) == 0.25
    assert objective_class("success_auc").value(losses, queries, None, horizon) == 1.0
    with pytest.raises(ValueError, match="needs a task that defines success"):
        MetaTrainer(DriftConfig(), _tasks(3), MetaGradConfig("es", objective="queries_to_success"))
    with pytest.raises(ValueError, match="order attack"):
        MetaTrainer(DriftConfig(), _tasks(3), MetaGradConfig("es", objective="tau_s"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"estimator": "bogus"}, "unknown meta-gradient estimator 'bogus'"),
        ({"population": 0}, "population=0 must be an integer >= 1"),
        ({"sigma": -1.0}, "sigma=-1.0 must be a finite number > 0"),
        ({"truncation": 0}, "truncation=0 must be an integer >= 1"),
        ({"objective": "final_loss"}, "tbptt differentiates the meta-loss"),
    ],
)
def test_bad_estimator_options_are_refused(changes, message):
    with pytest.raises((KeyError, ValueError), match=message):
        MetaGradConfig(**changes)
