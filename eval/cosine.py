"""Cosine similarity of each method's gradient estimate to the true gradient vs queries (papers/003 Fig. 6).

    python -m eval.cosine --task binary_classification --budget 5000
    python -m eval.cosine --task quadratic --methods zo_gs,zo_rl --zo-rl results/zo_rl/quadratic/best.zip

Every method optimizes the same instances from the same seeds through ``l2l.run`` (so, on stochastic
tasks, with the same minibatch stream). After each step, :func:`l2l.diagnostics.cosine_trace` compares
the estimate the method formed with the true gradient of the step's loss (the minibatch the step's
queries shared) at the iterate the step started from, taken by autograd and not counted as a query.
The curves are the mean (and std) over runs of cos(estimate_k, gradient_k), plotted against the
cumulative queries at the end of step k.

Methods (papers/003 sec. 4): ``zo_gs`` (ZO-SGD with q Gaussian directions, tuned for the task),
``guided_es`` (:func:`l2l.estimators.guided_directions`), ``zo_lstm`` (a ZO-LSTM checkpoint),
``zo_rl`` (a policy zip) and ``zo_rl_lstm`` (both). Writes ``out.json`` and ``out.png`` beside it.

For ``zo_rl`` it also reports how the policy tracks the gradient (:class:`PolicyTracking`, papers/003's
question of whether a policy can follow the iterate): at every step, whether or not the step's coin asks
the policy, the action the policy would take there, cos(action_k, true gradient_k), and
cos(action_k, action_{k-1}). A policy that tracks has the first well above 0 (a sign flip counts
too: the estimator uses a direction and its negative alike, so the absolute cosine is reported) and
the second below 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

import l2l
from eval.headtohead import run_seed
from eval.output import Written, launch_and_write
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config
from l2l.common.io import atomic_write, write_json_atomic
from l2l.common.options import (
    DeviceOptions,
    GridOptions,
    OutputOptions,
    default_of,
    fill_path,
    pinned_threads,
)
from l2l.diagnostics import cosine_trace, true_gradient
from l2l.estimators import check_q
from l2l.optimizers.core.base import ZOState
from l2l.oracle import Oracle
from l2l.run import Trajectory

METHODS = ("zo_gs", "guided_es", "zo_lstm", "zo_rl", "zo_rl_lstm")


@dataclass
class CosineConfig(DeviceOptions, GridOptions):
    """Cosine similarity between ZO gradient estimates and the true gradient, against queries."""

    task: str = default_of(GridOptions, "task", "binary_classification")
    methods: str = default_of(
        GridOptions, "methods", ",".join(METHODS), f"comma-separated methods among {', '.join(METHODS)}"
    )
    instances: int = default_of(GridOptions, "instances", 5)
    trials: int = default_of(GridOptions, "trials", 2)
    steps: int = doc_field(500, "the most steps per run")
    budget: int | None = doc_field(5000, "the most queries per run (a run stops before exceeding it)")
    q: int = doc_field(20, "query directions per step of zo_gs and guided_es")
    zo_lstm: str | None = doc_field(
        None, "ZO-LSTM checkpoint of zo_lstm and zo_rl_lstm (none: the task's shipped one)"
    )
    zo_rl: str | None = doc_field(None, "policy zip of zo_rl and zo_rl_lstm (none: the task's shipped one)")
    out: str = default_of(
        OutputOptions,
        "out",
        "results/cosine/{task}_{split}.json",
        "result JSON ({task}, {split} filled in); the PNG goes beside it",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.method_list()) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown} in --methods; choose among {', '.join(METHODS)}")
        check_at_least(self, ("steps",))
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget={self.budget} must be >= 1 (or none)")
        check_q(self.q)

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def out_path(self) -> Path:
        """``out`` with its ``{task}`` and ``{split}`` placeholders filled in."""
        return fill_path(self.out, self)


def build_method(name: str, config: CosineConfig) -> l2l.optimizers.ZOOptimizer:
    """The optimizer behind method ``name`` (checkpoints from the config, or the task's shipped ones)."""
    if name in ("zo_gs", "guided_es"):
        registered = "zo_sgd" if name == "zo_gs" else "guided_es"
        return l2l.make_optimizer(registered, task=config.task, q=config.q)
    from l2l.learned.checkpoint import load_zo_lstm, shipped_checkpoint

    lstm = config.zo_lstm or str(shipped_checkpoint(config.task))
    if name == "zo_lstm":
        return load_zo_lstm(lstm)
    from agents.zo_rl import load_zo_rl, load_zo_rl_lstm, shipped_policy  # imports stable-baselines3

    policy = config.zo_rl or str(shipped_policy(config.task))
    return load_zo_rl(policy) if name == "zo_rl" else load_zo_rl_lstm(policy, lstm)


class PolicyTracking:
    """A run callback for a ``zo_rl`` optimizer: the policy's action against the true gradient, step by step.

    At each iterate x_k (before step k + 1) it asks the policy for its action with the observation the
    step would use (the previous estimate included), without touching the run's generator or oracle,
    and records |cos(action_k, grad f(x_k))|, cos(action_k, action_{k-1}) and, for scale, how fast the
    gradient itself turns, cos(grad f(x_k), grad f(x_{k-1})): a policy whose actions turn much more
    slowly than that holds the part of its direction that is off the gradient from step to step.

    Args:
        policy: the ``agents.ZORL`` optimizer being run.
    """

    def __init__(self, policy: Any):
        self.policy = policy
        self.to_gradient: list[float] = []
        self.consecutive: list[float] = []
        self.gradient_consecutive: list[float] = []
        self._last: torch.Tensor | None = None
        self._last_grad: torch.Tensor | None = None

    def __call__(self, state: ZOState, oracle: Oracle, traj: Trajectory) -> None:
        action = self.policy.action(state.x, oracle.task, state.slots.get("estimate"))
        grad = true_gradient(oracle.task, state.x, oracle.batch)
        cos = torch.nn.functional.cosine_similarity
        self.to_gradient.append(abs(float(cos(action, grad, dim=0, eps=1e-30))))
        if self._last is not None:
            self.consecutive.append(float(cos(action, self._last, dim=0, eps=1e-30)))
            self.gradient_consecutive.append(float(cos(grad, self._last_grad, dim=0, eps=1e-30)))
        self._last, self._last_grad = action, grad


def policy_tracking(
    policy: l2l.optimizers.ZOOptimizer, task: l2l.tasks.Task, steps: int, seed: int, budget: int | None
) -> tuple[list[float], list[float], list[float]]:
    """(|cos(action, gradient)| per iterate, cos of consecutive actions, of consecutive gradients) along
    one ``l2l.run``.

    ``policy`` is a ``zo_rl`` optimizer, or a ZO-RL-LSTM (a policy trained inside a ZO-LSTM), whose
    sampler's actions are the ones measured.
    """
    probe = PolicyTracking(getattr(policy, "sampler", policy))  # a ZO-RL-LSTM asks its sampler
    l2l.run(policy, task, steps, budget=budget, seed=seed, callback=probe)
    return probe.to_gradient, probe.consecutive, probe.gradient_consecutive


def summarize_traces(traces: list[tuple[list[int], list[float]]]) -> dict:
    """Mean and std of the cosine per step index over runs (runs of one method share their query counts)."""
    shortest = min(len(c) for _, c in traces)
    cosines = np.array([c[:shortest] for _, c in traces], dtype=np.float64)
    return {
        "queries": traces[0][0][:shortest],
        "cosine_mean": cosines.mean(axis=0).tolist(),
        "cosine_std": cosines.std(axis=0).tolist(),
        "mean_cosine": float(cosines.mean()) if shortest else None,
        "runs": len(traces),
    }


def cosine_study(config: CosineConfig, progress: bool = True) -> dict:
    """Run every method on every (instance, trial) and return the result dict (nothing is written)."""
    with user_input():  # bad names and checkpoints are the command line's errors
        family = l2l.make_family(config.task, device=config.device)
        tasks = family.instances(config.split, limit=config.instances)
        methods = {name: build_method(name, config) for name in config.method_list()}
    results = {}
    runs = [(i, t) for i in range(len(tasks)) for t in range(config.trials)]
    with (
        pinned_threads(config.threads),
        tqdm(total=len(methods) * len(runs), unit="run", disable=not progress) as bar,
    ):
        for name, optimizer in methods.items():
            bar.set_postfix_str(name)
            traces = []
            for i, t in runs:
                traces.append(
                    cosine_trace(
                        optimizer, tasks[i], config.steps, run_seed(config.seed, i, t), config.budget
                    )
                )
                bar.update()
            results[name] = {
                **summarize_traces(traces),
                "queries_per_step": optimizer.queries_per_step(tasks[0].dim),
            }
            if name == "zo_rl":
                results[name].update(tracking_summary(optimizer, tasks, runs, config))
    settings = ("task", "split", "instances", "trials", "steps", "budget", "q", "seed", "zo_lstm", "zo_rl")
    return {**{k: getattr(config, k) for k in settings}, "version": l2l.__version__, "results": results}


def tracking_summary(
    policy: l2l.optimizers.ZOOptimizer, tasks: list, runs: list[tuple[int, int]], config: CosineConfig
) -> dict:
    """The mean :class:`PolicyTracking` cosines of ``policy`` over ``runs`` (instance, trial)."""
    to_gradient, consecutive, gradient_consecutive = [], [], []
    for i, t in runs:
        seed = run_seed(config.seed, i, t)
        grad_cos, step_cos, turn_cos = policy_tracking(policy, tasks[i], config.steps, seed, config.budget)
        to_gradient += grad_cos
        consecutive += step_cos
        gradient_consecutive += turn_cos
    return {
        "action_gradient_cosine_mean": float(np.mean(to_gradient)) if to_gradient else None,
        "consecutive_action_cosine_mean": float(np.mean(consecutive)) if consecutive else None,
        "consecutive_gradient_cosine_mean": (
            float(np.mean(gradient_consecutive)) if gradient_consecutive else None
        ),
    }


def plot_cosine(result: dict, path: str | Path) -> Path:
    """Mean cosine (± std band) of every method against cumulative queries, as papers/003 Fig. 6."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    for k, (name, res) in enumerate(result["results"].items()):
        xs, mean, std = np.array(res["queries"]), np.array(res["cosine_mean"]), np.array(res["cosine_std"])
        ax.plot(xs, mean, color=colors(k % colors.N), label=name)
        ax.fill_between(xs, mean - std, mean + std, color=colors(k % colors.N), alpha=0.15, linewidth=0)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("cosine(estimate, true gradient)")
    ax.set_title(
        f"{result['task']} ({result['split']}, {result['instances']} x {result['trials']} runs)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run the study, write the JSON and PNG, print each method's mean cosine."""
    return launch_and_write(cosine_study, write_study, parse_config(CosineConfig, argv))


def write_study(result: dict, config: CosineConfig) -> Written:
    """The JSON and the plot at ``--out``, and each method's mean cosine as the text to print."""
    path = write_json_atomic(config.out_path(), result)
    png = plot_cosine(result, path.with_suffix(".png"))
    lines = []
    for name, res in result["results"].items():
        lines.append(f"{name:>12}: mean cosine {res['mean_cosine']:.4f} over {len(res['queries'])} steps")
        if "action_gradient_cosine_mean" in res:
            lines.append(
                f"{'':>12}  policy action: |cos| to the gradient {res['action_gradient_cosine_mean']:.4f}, "
                f"cos to the previous action {res['consecutive_action_cosine_mean']:.4f} "
                f"(the gradient's to its previous: {res['consecutive_gradient_cosine_mean']:.4f})"
            )
    return Written("\n".join(lines), [path, png])


if __name__ == "__main__":
    run_cli(main)
