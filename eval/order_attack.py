"""The black-box order-attack table (papers/004 Table 3): ``python -m eval.order_attack --split test``.

For each (k, N) block and each eps (in units of 1/255), every method attacks the same query images of
``fashion_order_attack`` from the same seeds (through :func:`eval.headtohead.run_grid`) under a budget of
Q queries (papers/004: 1,000), stopping early once tau_S >= 0.99. Each run reports the **best iterate
seen**: the running best of -tau_S over its iterates. For Rand, Beta and PSO the iterate already is the
best sample seen (papers/004's answer); NES and SPSA's iterate is their search mean, and the samples
around it are not tracked. A cell holds the mean tau_S over the runs and, for N = inf, the mean rank
(papers/004's mR) of the candidates in the full ranking at that best iterate.

``--settings paper`` (the default) runs each method with papers/004 app. D's settings
(:func:`paper_settings`): Rand none; Beta lr 3, H 50; PSO w 1.1, phi_p 0.57, phi_g 0.44, H 40; NES and
SPSA 50 queries per step (q = 25 antithetic pairs), sign steps of eta = 2/255 (delta = 2d/255), NES
sigma = eps/0.5, SPSA delta = 2/255; the white-box reference ``fo_pgd`` takes 24 sign steps of 1/255 on
the task's surrogate loss (``Task.differentiable_loss``, papers/004 eq. 4) from x0 = 0 (no random
start, app. B.3). ``--settings tuned`` reads the values ``eval.tune`` recorded on val instead.

The query-budget table (papers/004 Table 7: Q = 100 ... 10,000 at eps 4/255) is read off the same runs:
the best tau_S seen within each budget q <= Q (``--budgets``). No method here adapts to its budget, so
that is what a run with budget q reports; run with ``--budget 10000 --eps 4`` for the paper's table.

Outputs (``--out`` stem): ``<stem>.json`` (``cells``: one entry per (k, N, eps), each with
``results[method]["tau_s_mean"]``; the top-level ``results`` is the first cell's), ``<stem>.md`` (the
table) and ``<stem>_k<k>_N<N>_eps<eps>.png`` (mean best tau_S against queries, one per cell).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import l2l
from eval.headtohead import run_grid
from eval.output import Written, launch_and_write
from eval.report import WHITE_BOX_MARK, fmt_cell, legend_outside, line_style, new_axes, save_png
from eval.specs import build_optimizers, parse_optimizers
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config, parse_float_list
from l2l.common.io import write_json_atomic, write_text_atomic
from l2l.common.options import GridOptions, LockstepOptions, OutputOptions, ShardOptions, default_of
from l2l.optimizers.core.base import ZOOptimizer
from l2l.tasks.order_attack import OrderAttackTask
from l2l.tasks.registry import tuning_key

FAMILY = "fashion_order_attack"
#: points of the tau_S-against-queries curves (0 .. budget)
CURVE_POINTS = 101


@dataclass
class OrderAttackConfig(LockstepOptions, ShardOptions):
    """papers/004 Table 3 on the Fashion-MNIST ranking model: tau_S (and mR at N = inf) per method and eps."""

    methods: str = default_of(
        GridOptions, "methods", "rand,beta,pso,nes,spsa,fo_pgd", "comma-separated registered methods"
    )
    k: str = doc_field("5", "comma-separated candidate counts (papers/004: 5, 10, 25)")
    N: str = doc_field("inf,50,k", "comma-separated visible ranges: inf, a number, or k (N = k)")
    eps: str = doc_field("2,4,8,16", "comma-separated L-inf radii in units of 1/255")
    budget: int = doc_field(1000, "queries per run, Q (papers/004: 1,000)")
    split: Literal["train", "val", "test"] = default_of(
        GridOptions, "split", "test", "which split's query images to attack"
    )
    instances: int = default_of(GridOptions, "instances", 200, "query images (the first ones of the split)")
    seed: int = default_of(GridOptions, "seed", 0)
    settings: Literal["paper", "tuned"] = doc_field("paper", "papers/004 app. D settings, or eval.tune's")
    pgd_steps: int = doc_field(24, "steps of the white-box fo_pgd reference (papers/004: 24 of 1/255)")
    progress: bool = doc_field(True, "show progress bars")
    out: str = default_of(
        OutputOptions,
        "out",
        "results/order_attack/order_attack.json",
        "the JSON path; the others share its stem",
    )
    budgets: str = doc_field(
        "100,500,1000,5000,10000",
        "query budgets of the query-budget table (papers/004 Table 7), read off each run's best-so-far "
        "curve; those above --budget are left out",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("budget", "instances", "pgd_steps"))
        self.cells()  # refuse malformed lists before anything runs

    def cells(self) -> list[tuple[int, int | None, float]]:
        """The (k, N, eps) cells in table order: blocks by k then N, eps inside each block."""
        ks = [int(v) for v in parse_float_list(self.k, "k")]
        eps = parse_float_list(self.eps, "eps")
        if not ks or not eps:
            raise ValueError(f"k={self.k!r} and eps={self.eps!r} must each list at least one value")
        return [(k, n, e) for k in ks for n in parse_visible(self.N, k) for e in eps]


def budget_points(cfg: OrderAttackConfig) -> list[int]:
    """The budgets of the query-budget table that the runs reach (at most ``cfg.budget``), ascending."""
    points = sorted({int(q) for q in parse_float_list(cfg.budgets, "budgets") if 0 < q <= cfg.budget})
    return points or [cfg.budget]


def parse_visible(text: str, k: int) -> list[int | None]:
    """The N values of ``text`` for ``k``: ``inf`` -> None, ``k`` -> k, numbers as they are.

    Args:
        text: e.g. ``"inf,50,k"``.
        k: the candidate count that ``k`` stands for.
    """
    out: list[int | None] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item.lower() in ("inf", "none"):
            out.append(None)
        elif item.lower() == "k":
            out.append(k)
        elif item.isdigit():
            out.append(int(item))
        else:
            raise ValueError(f"N item {item!r} must be inf, k or a whole number (e.g. --N inf,50,k)")
    if not out:
        raise ValueError(f"N={text!r} lists no visible range; use e.g. --N inf")
    return out


def paper_settings(name: str, eps: float, dim: int) -> dict:
    """papers/004 app. D's settings for method ``name`` at radius ``eps``/255 on a ``dim``-pixel image.

    The project's sign steps move delta/d per coordinate, so eta = 2/255 is delta = 2d/255. Methods
    not listed here run with their class defaults (Rand, Beta and PSO's defaults are the paper's).

    Args:
        name: a registered method.
        eps: the L-inf radius in units of 1/255.
        dim: the number of pixels d.
    """
    sign_step = 2 * dim / 255
    table = {
        "nes": {"q": 25, "delta": sign_step, "mu": (eps / 0.5) / 255},
        "spsa": {"q": 25, "delta": sign_step, "mu": 2 / 255},
        "fo_pgd": {"delta": dim / 255, "sign": True},
    }
    return table.get(name, {})


def build_methods(cfg: OrderAttackConfig, k: int, N: int | None, eps: float, dim: int):
    """(label, optimizer) pairs for one cell, with the settings ``cfg.settings`` asks for.

    The list is the :mod:`eval.specs` one, so learned checkpoints (``label=path``) come with their
    untrained controls under either setting. ``paper`` gives every registered method papers/004 app.
    D's settings; ``tuned`` reads the values ``eval.tune`` recorded under this cell's key. A registered
    white-box reference keeps the paper's protocol (24 steps of 1/255) either way, since it is a fixed
    reference, not a tuned method.
    """
    key = tuning_key(FAMILY, k=k, N=N, eps=eps)
    methods = build_optimizers(parse_optimizers(cfg.methods, task=FAMILY, q=None, tuned_key=key))
    registered = set(l2l.optimizer_names())
    for i, (label, opt) in enumerate(methods):
        if label in registered and (cfg.settings == "paper" or opt.white_box):
            methods[i] = (label, l2l.make_optimizer(label, **paper_settings(label, eps, dim)))
    return methods


class BestIterate:
    """A run observer that keeps the metrics of the best iterate seen (uncounted: it reads the task)."""

    def __init__(self, task: OrderAttackTask):
        self.task, self.best_loss, self.metrics = task, math.inf, {}

    def __call__(self, state, oracle, traj) -> None:
        """Record the task's metrics at ``state.x`` when the iterate just recorded is the best so far."""
        if traj.losses[-1] < self.best_loss:
            self.best_loss = traj.losses[-1]
            self.metrics = self.task.metrics(state.x)

    def result(self) -> dict:
        """The best iterate's metrics (kept with the run's record)."""
        return self.metrics


def best_curve(losses: list[float], queries: list[int], grid: np.ndarray) -> np.ndarray:
    """Best tau_S seen within q queries, for each q of ``grid``, from one run's trajectory.

    Args:
        losses: the run's losses at its iterates (-tau_S).
        queries: the cumulative queries at each iterate.
        grid: the query counts to read.
    """
    best = -np.minimum.accumulate(np.asarray(losses))
    last = np.searchsorted(np.asarray(queries), grid, side="right") - 1
    return best[np.clip(last, 0, None)]


def run_method(label: str, optimizer: ZOOptimizer, tasks: list[OrderAttackTask], cfg: OrderAttackConfig):
    """Run one method on every task of a cell; returns its summary entry."""
    steps = cfg.pgd_steps if optimizer.white_box else cfg.budget
    records = run_grid(
        [(label, optimizer)], tasks, trials=1, steps=steps, budget=cfg.budget, seed=cfg.seed,
        stop_at_success=True, progress=cfg.progress,
        observe=lambda _label, i, _trial: BestIterate(tasks[i]), vectorize=cfg.vectorize,
    )  # fmt: skip
    taus = np.array([r.observed["tau_s"] for r in records])
    ranks = np.array([r.observed["mean_rank"] for r in records])
    grid, points = np.linspace(0, cfg.budget, CURVE_POINTS), budget_points(cfg)
    curves = np.stack([best_curve(r.trajectory.losses, r.trajectory.queries, grid) for r in records])
    at = np.stack([best_curve(r.trajectory.losses, r.trajectory.queries, np.array(points)) for r in records])
    return {
        "tau_s_mean": float(taus.mean()),
        "tau_s_std": float(taus.std()),
        "mean_rank_mean": float(ranks.mean()),
        "success_rate": float(np.mean([r.trajectory.success_step is not None for r in records])),
        "queries_mean": float(np.mean([r.trajectory.queries[-1] for r in records])),
        "tau_s_curve": curves.mean(axis=0).tolist(),
        "queries_grid": grid.tolist(),
        "tau_s_at_budget": {str(q): float(v) for q, v in zip(points, at.mean(axis=0), strict=True)},
        "white_box": bool(optimizer.white_box),
        "config": optimizer.config(),
        "runs": len(records),
        "wall_s": float(sum(r.trajectory.wall_s for r in records)),
    }


def order_attack_table(cfg: OrderAttackConfig) -> dict:
    """Run every cell of the table; returns the JSON-ready result."""
    torch.set_num_threads(cfg.threads)
    cells = []
    for k, N, eps in cfg.cells():
        with user_input():
            family = l2l.make_family(FAMILY, device=cfg.device, k=k, N=N, eps=eps)
            tasks = family.instances(cfg.split, cfg.instances)
            methods = build_methods(cfg, k, N, eps, tasks[0].dim)
        clean = float(np.mean([t.metrics(t.x0())["tau_s"] for t in tasks]))
        results = {label: run_method(label, opt, tasks, cfg) for label, opt in methods}
        cells.append({"k": k, "N": N, "eps": eps, "clean_tau_s_mean": clean, "results": results})
    return {
        "task": FAMILY, "split": cfg.split, "instances": cfg.instances, "budget": cfg.budget,
        "settings": cfg.settings, "seed": cfg.seed, "version": l2l.__version__, "config": asdict(cfg),
        "cells": cells, "results": cells[0]["results"],
    }  # fmt: skip


def markdown_table(result: dict) -> str:
    """Table 3's layout: one row per method, one column per (k, N, eps); "tau_S, mR" cells at N = inf."""
    cells = result["cells"]
    methods = list(cells[0]["results"])
    head = [f"k={c['k']} N={'inf' if c['N'] is None else c['N']} eps={c['eps']:g}/255" for c in cells]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(cells) + 1) + "|"]
    clean = " | ".join(fmt_cell(c["clean_tau_s_mean"], ".3f") for c in cells)
    lines.append(f"| none (clean) | {clean} |")
    for method in methods:
        row = []
        for c in cells:
            res = c["results"][method]
            text = fmt_cell(res["tau_s_mean"], ".3f")
            row.append(text + (f", {res['mean_rank_mean']:.1f}" if c["N"] is None else ""))
        mark = f" {WHITE_BOX_MARK}" if cells[0]["results"][method]["white_box"] else ""
        lines.append(f"| {method}{mark} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def budget_table(result: dict) -> str:
    """papers/004 Table 7's layout: one row per method, mean best tau_S within each budget, per cell."""
    lines = []
    for c in result["cells"]:
        points = list(next(iter(c["results"].values()))["tau_s_at_budget"])
        n = "inf" if c["N"] is None else c["N"]
        header = " | ".join(f"Q={q}" for q in points)
        lines += [f"k={c['k']} N={n} eps={c['eps']:g}/255", "", f"| method | {header} |"]
        lines.append("|---" * (len(points) + 1) + "|")
        for method, res in c["results"].items():
            values = " | ".join(f"{v:.3f}" for v in res["tau_s_at_budget"].values())
            lines.append(f"| {method} | {values} |")
        lines.append("")
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """A heading with the settings, the table, the query-budget table and how to read them."""
    return "\n".join([
        f"## Order attack ({result['task']}, {result['split']}): {result['instances']} query images, "
        f"Q = {result['budget']}, {result['settings']} settings",
        "",
        markdown_table(result),
        "",
        "Cells: mean tau_S of the best iterate seen (papers/004 Alg. 1), and at N = inf the mean rank of the "
        f"candidates there. {WHITE_BOX_MARK}: white-box PGD on the surrogate loss (not a black-box method).",
        "",
        "### Best tau_S within Q queries (the same runs)",
        "",
        budget_table(result),
    ])  # fmt: skip


def plot_cell(cell: dict, path: Path) -> Path:
    """Mean best tau_S against queries for each method of one cell."""
    fig, ax = new_axes()
    for i, (label, res) in enumerate(cell["results"].items()):
        ax.plot(res["queries_grid"], res["tau_s_curve"], label=label, **line_style(i, res["white_box"]))
    n = "inf" if cell["N"] is None else cell["N"]
    ax.set_title(f"order attack, k={cell['k']}, N={n}, eps={cell['eps']:g}/255", fontsize=10)
    ax.set_xscale("symlog", linthresh=10)  # the curve starts at 0 queries; most of it moves early
    ax.set_xlabel("oracle queries (log scale above 10)")
    ax.set_ylabel("best tau_S seen (mean over runs)")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return save_png(fig, path)


def write_outputs(result: dict, json_path: Path) -> list[Path]:
    """Write the JSON, the markdown and one PNG per cell; returns the paths."""
    stem = json_path.with_suffix("")
    paths = [write_json_atomic(json_path, result)]
    paths.append(write_text_atomic(stem.with_suffix(".md"), markdown_report(result)))
    for c in result["cells"]:
        n = "inf" if c["N"] is None else c["N"]
        paths.append(plot_cell(c, stem.with_name(f"{stem.name}_k{c['k']}_N{n}_eps{c['eps']:g}.png")))
    return paths


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run the table, print it and write its files.

    With ``--workers N`` (or under torchrun) each method's runs are sharded over N processes and rank 0
    writes (:mod:`eval.distributed`); the result is the serial one, wall times aside.
    """
    return launch_and_write(order_attack_table, write_table, parse_config(OrderAttackConfig, argv))


def write_table(result: dict, cfg: OrderAttackConfig) -> Written:
    """Rank 0's part: the JSON, the markdown and the plots at ``--out``."""
    return Written(markdown_report(result), write_outputs(result, Path(cfg.out)))


if __name__ == "__main__":
    run_cli(main)
