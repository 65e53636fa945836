"""How good must a sampling policy be? ZO-RL steps along white-box directions of a set cosine to the gradient.

    python -m eval.policy_bound --task mnist_attack --split val --instances 10 --budget 4000

A diagnosis for papers/003's MDP (:mod:`envs.zo_env`). Every step is a ``zo_rl`` step: it queries f(x)
and f(x + mu u) (2 queries) and moves x <- project(x - eta (f(x + mu u) - f(x)) / mu * u), and with
chance 1 - P it uses a standard Gaussian u instead. But u is not a trained policy's output. It is a
synthetic direction with cosine ``c`` to the true gradient (autograd, so these rows are white-box
references, marked † in the tables):

- ``track``: u = sqrt(d) (c g/|g| + sqrt(1 - c^2) z), with g the gradient at the current iterate and z
  a fresh unit direction orthogonal to it (Gaussian before normalizing): a policy that keeps up with
  the iterate, with c of its signal on the gradient and the rest new exploration;
- ``fixed``: the same u, built at the run's first policy step and then reused: the best that a policy
  whose output does not change along a run can do (the shipped ZO-RL policies are such policies; see
  docs/results/zo_rl.md);
- ``held``: as ``track``, but z is drawn once per run and held: a policy that follows the gradient
  with c of its signal while its error stays the same from step to step (a trained policy whose
  actions turn more slowly than the gradient sits between ``track`` and ``held``).

With ``--directions guided`` the rows take papers/003's guided form instead (:mod:`envs.mdp`): a step
draws its q directions a + z_i around a mean action a, at q + 1 queries, and the rows set that mean to
s v / max|v| (``--strengths`` s, the action's largest entry) for a vector v:

- ``track``, ``fixed`` and ``held``: v as above, of cosine c to the true gradient (white-box);
- ``last``: v the previous step's ZO estimate, and ``ema``: v the running mean of the estimates
  (decay 0.9). These are black-box: the policies that a policy observing the last estimates
  (``observe="iterate_estimate"``) could at least learn to copy, and so the references for it.
- ``trend``: v the running mean of the estimates' fresh parts (:func:`l2l.estimators.fresh_part`, decay
  :data:`envs.mdp.TREND_DECAY`), the channel of ``observe="iterate_trend"``: black-box too, and the
  hand-made policy that a trend-observing policy can learn to copy.

Every (mode, c, P) runs at each step size eta, on the same instances and seeds. Tuned ZO-SGD with q
directions per step is the reference, and ``--zo-rl`` adds a trained policy with its own P and eta.
The bound table keeps each configuration's best eta, so choose it on val, not test. It shows the
cosine that a learned policy must reach, and how it must hold it along a run, to beat ZO-SGD at an
equal query budget.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from agents.zo_rl import ZORL, load_zo_rl
from envs.mdp import by_largest
from envs.spec import MDPSpec, default_mu_eta
from eval import report
from eval.compare import CompareConfig, head_to_head
from eval.output import Written, launch_and_write
from l2l.common.cli import run_cli, user_input
from l2l.common.config import doc_field, parse_config, parse_float_list
from l2l.common.io import write_text_atomic
from l2l.common.options import GridOptions, OutputOptions, ShardOptions, default_of
from l2l.diagnostics import true_gradient
from l2l.estimators import gaussian_directions
from l2l.optimizers import make_optimizer
from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.oracle import Oracle
from l2l.tasks import make_family

MODES = ("track", "fixed", "held", "last", "ema", "trend")
#: the modes whose direction comes from the run's own estimates, not the true gradient
ESTIMATE_MODES = ("last", "ema", "trend")
#: decay of the running mean of the estimates that ``ema`` follows
EMA_DECAY = 0.9


def blend_with_gradient(grad: torch.Tensor, noise: torch.Tensor, cosine: float) -> torch.Tensor:
    """sqrt(d) (c g/|g| + sqrt(1 - c^2) z), z the unit part of ``noise`` orthogonal to ``grad``.

    Its cosine to ``grad`` is exactly ``cosine`` (a zero gradient gives the normalized noise).
    """
    d = grad.numel()
    norm = grad.norm()
    if float(norm) == 0.0:
        return noise * (d**0.5 / noise.norm().clamp_min(1e-30))
    unit = grad / norm
    ortho = noise - (noise @ unit) * unit
    ortho = ortho / ortho.norm().clamp_min(1e-30)
    return (cosine * unit + (1.0 - cosine**2) ** 0.5 * ortho) * d**0.5


@dataclass
class GradientCosinePolicy(ZORL):
    """A ``zo_rl`` step whose policy direction has cosine ``cosine`` to the true gradient (module docstring).

    Args:
        cosine: c, the cosine of the policy direction to the true gradient, in [0, 1].
        track: rebuild the direction at every policy step (``track``), or build it once and hold it
            for the run (``fixed``).
        hold_noise: with ``track``, draw the off-gradient part once per run and keep it (``held``).
        mdp, policy_prob: as in :class:`~agents.zo_rl.ZORL` (``policy`` and ``mdp.observe`` are unused).
    """

    name = "gradient_cosine_policy"
    white_box: ClassVar[bool] = True
    needs_policy: ClassVar[bool] = False

    cosine: float = 0.1
    track: bool = True
    hold_noise: bool = False
    strength: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.cosine <= 1:
            raise ValueError(f"cosine={self.cosine!r} must be in [0, 1] (a cosine to the gradient)")
        check_strength(self.strength)

    def init_slots(self, state: ZOState) -> None:
        state.slots["held"] = None
        state.slots["noise"] = None

    def propose(self, state: ZOState, oracle: Oracle) -> torch.Tensor:
        if state.slots["held"] is not None:
            return state.slots["held"]
        grad = true_gradient(oracle.task, state.x, oracle.batch)
        noise = state.slots["noise"]
        if noise is None:
            noise = gaussian_directions(1, grad.numel(), state.rng)[0]
            state.slots["noise"] = noise if self.hold_noise else None
        u = blend_with_gradient(grad, noise, self.cosine)
        if not self.track:
            state.slots["held"] = u
        return u

    def guided_mean(self, state: ZOState, oracle: Oracle) -> torch.Tensor:
        return mean_action(self.propose(state, oracle), self.strength)  # the same direction, as an action

    def config(self) -> dict:
        return {**super().config(), "cosine": self.cosine, "track": self.track,
                "hold_noise": self.hold_noise, "strength": self.strength}  # fmt: skip


@dataclass
class EstimateFollowingPolicy(ZORL):
    """A guided ``zo_rl`` step whose mean action follows the run's own past ZO estimates (black-box).

    It follows ``ZORL.step``'s estimate slot, which holds the last estimate, or with
    ``observe="iterate_trend"`` the trend (``trend``, with memory 0).

    Args:
        memory: 0 follows the slot as it is (``last``, ``trend``); ``EMA_DECAY`` its running mean (``ema``).
        strength: s, the mean action's largest entry: a = s v / max|v|.
        mdp, policy_prob: as in :class:`~agents.zo_rl.ZORL` (its directions ``guided``).
    """

    name = "estimate_following_policy"
    needs_policy: ClassVar[bool] = False

    mdp: MDPSpec = dataclasses.field(
        default_factory=lambda: MDPSpec(directions="guided", q=1, mu=1e-4, eta=1e-4)
    )
    memory: float = 0.0
    strength: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.memory < 1:
            raise ValueError(f"memory={self.memory!r} must be in [0, 1) (the decay of the estimates' mean)")
        check_strength(self.strength)

    def init_slots(self, state: ZOState) -> None:
        state.slots["followed"] = torch.zeros_like(state.x)

    def guided_mean(self, state: ZOState, oracle: Oracle) -> torch.Tensor:
        return mean_action(state.slots["followed"], self.strength)

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        state = super().step(state, oracle)
        followed = state.slots["followed"]
        state.slots["followed"] = self.memory * followed + (1 - self.memory) * state.slots["estimate"]
        return state

    def config(self) -> dict:
        return {**super().config(), "memory": self.memory, "strength": self.strength}


def mean_action(v: torch.Tensor, strength: float) -> torch.Tensor:
    """s v / max|v|, the action whose largest entry is s along ``v`` (zero for the zero vector)."""
    return strength * by_largest(v)


def check_strength(strength: float) -> None:
    """A mean action's largest entry s must lie in (0, 1], inside the action box."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength={strength!r} must be in (0, 1] (the largest entry of an action)")


@dataclass
class BoundConfig(ShardOptions):
    """ZO-RL steps along white-box directions of a set cosine to the gradient, against tuned ZO-SGD."""

    task: str = default_of(GridOptions, "task", "mnist_attack")
    split: Literal["train", "val", "test"] = default_of(
        GridOptions, "split", "val", "instance split; the bound table picks eta, so keep this on val"
    )
    instances: int = default_of(GridOptions, "instances", 10)
    trials: int = default_of(GridOptions, "trials", 1)
    budget: int = doc_field(4000, "total oracle queries per run (every method gets the same budget)")
    modes: str = doc_field("track,fixed", f"comma-separated among {', '.join(MODES)}")
    cosines: str = doc_field("0.05,0.1,0.2", "comma-separated cosines c to the true gradient, in [0, 1]")
    policy_probs: str = doc_field(
        "1,0.1", "comma-separated P, the chance a step uses the synthetic direction"
    )
    etas: str | None = doc_field(
        None,
        "comma-separated step sizes (none: 2x and 1/2x the MDP's default eta, "
        "envs.spec.default_mu_eta: the tuned ZO-SGD learning rate over its q)",
    )
    q: int = doc_field(
        20, "query directions per step of the ZO-SGD reference (tuned for --task) and of the guided rows"
    )
    directions: Literal["single", "guided"] = doc_field(
        "single",
        "single: each row's step queries along its one direction (2 queries); guided: q directions "
        "around a mean action along it (q + 1 queries, papers/003 sec. 3)",
    )
    strengths: str = doc_field(
        "0.25,0.5", "guided only: comma-separated largest entries s of the mean action, in (0, 1]"
    )
    zo_rl: str | None = doc_field(None, "a trained policy zip to add as a row, with its stored P and eta")
    seed: int = default_of(GridOptions, "seed", 0)
    out: str = default_of(
        OutputOptions,
        "out",
        "results/policy_bound/{task}_{split}.json",
        "result JSON ({task}, {split} filled in); the CSVs, plots and out_bound.md go beside it",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.mode_list()) - set(MODES))
        if unknown:
            raise ValueError(f"unknown mode(s) {unknown} in --modes; choose among {', '.join(MODES)}")
        if self.directions == "single" and set(self.mode_list()) & set(ESTIMATE_MODES):
            raise ValueError(f"modes {', '.join(ESTIMATE_MODES)} set a guided mean: add --directions guided")
        for strength in parse_float_list(self.strengths, "strengths"):
            check_strength(strength)
        for name in ("cosines", "policy_probs", "etas", "strengths"):
            if getattr(self, name) is not None and not parse_float_list(getattr(self, name), name):
                raise ValueError(f"{name}={getattr(self, name)!r} lists no value; give at least one")
        # the rest (instances, trials, budget, q, threads, workers, split) is checked by CompareConfig
        self.compare_config()

    def mode_list(self) -> list[str]:
        return [m.strip() for m in self.modes.split(",") if m.strip()]

    def compare_config(self) -> CompareConfig:
        """The head-to-head settings these rows run under."""
        shared = ("task", "split", "instances", "trials", "budget", "q", "seed", "threads", "workers", "out")
        shared += ("device",)
        return CompareConfig(**{k: getattr(self, k) for k in shared}, wandb="disabled")


def bound_rows(config: BoundConfig) -> list[tuple[str, ZOOptimizer]]:
    """The labeled optimizers: the ZO-SGD reference, the optional policy, then the synthetic grid."""
    dim = make_family(config.task).instance(config.split, 0).dim
    mu, default_eta = default_mu_eta(config.task, dim, config.directions)
    etas = parse_float_list(config.etas, "etas") if config.etas else [2 * default_eta, default_eta / 2]
    rows: list[tuple[str, ZOOptimizer]] = [("zo_sgd", make_optimizer("zo_sgd", task=config.task, q=config.q))]
    if config.zo_rl:
        rows.append(("zo_rl", load_zo_rl(config.zo_rl)))
    guided = config.directions == "guided"
    strengths = parse_float_list(config.strengths, "strengths") if guided else [1.0]
    for mode in config.mode_list():
        cosines = [0.0] if mode in ESTIMATE_MODES else parse_float_list(config.cosines, "cosines")
        probs = parse_float_list(config.policy_probs, "policy_probs")
        grid = itertools.product(cosines, strengths, probs, etas)
        for cosine, strength, prob, eta in grid:
            rows.append((row_label(mode, cosine, strength if guided else None, prob, eta),
                         synthetic_policy(config, mode, cosine, strength, prob, mu, eta)))  # fmt: skip
    return rows


def row_label(mode: str, cosine: float, strength: float | None, prob: float, eta: float) -> str:
    """The row's label: its mode, c (white-box modes), s (guided), P and eta; eta comes last."""
    parts = [mode] + ([] if mode in ESTIMATE_MODES else [f"c={cosine:g}"])
    parts += [] if strength is None else [f"s={strength:g}"]
    return " ".join([*parts, f"P={prob:g}", f"eta={eta:.3g}"])


def synthetic_policy(
    config: BoundConfig, mode: str, cosine: float, strength: float, prob: float, mu: float, eta: float
) -> ZORL:
    """The row's stepping rule: a white-box direction of cosine c, or a mean that follows the estimates."""
    if mode in ESTIMATE_MODES:
        memory = EMA_DECAY if mode == "ema" else 0.0
        observe = "iterate_trend" if mode == "trend" else "iterate"
        mdp = MDPSpec(observe=observe, directions="guided", q=config.q, mu=mu, eta=eta)
        return EstimateFollowingPolicy(mdp=mdp, policy_prob=prob, memory=memory, strength=strength)
    shared = {"mdp": MDPSpec(q=1, mu=mu, eta=eta), "policy_prob": prob}
    if config.directions == "guided":
        shared.update(mdp=MDPSpec(directions="guided", q=config.q, mu=mu, eta=eta), strength=strength)
    return GradientCosinePolicy(**shared, cosine=cosine, track=mode != "fixed", hold_noise=mode == "held")


def bound_table(result: dict) -> str:
    """Markdown: each (mode, c, P) at its best eta, with the reference rows first."""
    best: dict[str, tuple[str, dict]] = {}
    for label, res in result["results"].items():
        key = label.rsplit(" eta=", 1)[0]
        if key not in best or res["final_loss_mean"] < best[key][1]["final_loss_mean"]:
            best[key] = (label, res)
    lines = ["| direction | eta (best) | final loss (mean ± std) | success rate |", "|---|---|---|---|"]
    for key, (label, res) in best.items():
        eta = label.rsplit(" eta=", 1)[1] if " eta=" in label else "tuned"
        mark = f" {report.WHITE_BOX_MARK}" if res.get("white_box") else ""
        loss = f"{res['final_loss_mean']:.4g} ± {res['final_loss_std']:.3g}"
        lines.append(f"| {key}{mark} | {eta} | {loss} | {report.fmt_cell(res['success_rate'], '.1%')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run every row, print the bound table and write the files; returns the result.

    With ``--workers N`` (or under torchrun) the runs are sharded over N processes and rank 0 writes
    (:mod:`eval.distributed`).
    """
    return launch_and_write(bound_study, write_bound, parse_config(BoundConfig, argv))


def bound_study(config: BoundConfig) -> dict:
    """One rank's runs of every row; returns the head-to-head result with the bound config."""
    with user_input():  # bad names, values and policy paths are the command line's errors
        rows = bound_rows(config)
    sources = {label: "white-box synthetic policy" if opt.white_box else label for label, opt in rows}
    if config.zo_rl:
        sources["zo_rl"] = config.zo_rl
    result = head_to_head(config.compare_config(), rows, sources)
    result["bound_config"] = dataclasses.asdict(config)
    return result


def write_bound(result: dict, config: BoundConfig) -> Written:
    """Rank 0's part: the comparison's files beside ``--out`` and the bound table (``<stem>_bound.md``)."""
    paths = report.OutputPaths.beside(config.compare_config().out_path())
    report.write_all(result, paths)
    table = bound_table(result)
    md = write_text_atomic(paths.json.with_name(f"{paths.json.stem}_bound.md"), table + "\n")
    return Written(table, [*dataclasses.astuple(paths), md])


if __name__ == "__main__":
    run_cli(main)
