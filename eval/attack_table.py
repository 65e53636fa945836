"""Black-box attack table (papers/000 Table 1): ``python -m eval.attack_table --split test --budget 2000``.

Every method attacks the same instances of an attack task family from the same seeds (through
:func:`eval.headtohead.run_grid`), stopping at the first successful iterate or before the step that would
exceed the query budget. For each method it reports the success rate, the mean and median queries over
the successful runs, and the mean L1 / L2 / L-inf size of the successful adversarial perturbations
(``task.adversarial(x) - task.image``, i.e. after the image-box clamp), and writes JSON and markdown.

Two query conventions:

- **without checks** (``l2l.run``'s ``success_query``): the queries the optimizer spent to reach the
  first successful iterate x_K; knowing that x_K succeeds is free.
- **with checks**: a real attacker must query the model at an iterate to see that it succeeds. An
  optimizer whose every step queries f at its own starting iterate (``optimizer.evaluates_iterate``:
  forward differences, ZO-NGD, white-box methods) learns for free that x_1 .. x_{K-1} failed (each was
  the base point of the next step) and pays 1 query to check x_K; any other optimizer (central
  differences: NES, SPSA, ...) pays 1 check per step, K in all. So with = without + (1 or K). x_0, the
  clean image, is known to be classified correctly and is not checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import l2l
from eval.compare import pinned_threads
from eval.headtohead import RunRecord, run_grid
from eval.report import WHITE_BOX_MARK, fmt_cell
from l2l.common.cli import run_cli, user_input
from l2l.common.config import doc_field, parse_config
from l2l.common.io import write_json_atomic, write_text_atomic
from l2l.optimizers.base import ZOOptimizer
from l2l.run import Trajectory
from l2l.tasks.attack import AttackTask

DEFAULT_METHODS = "zoo_adam,zoo_newton,zo_ngd,nes,spsa,zo_sgd,zo_signsgd,zo_adam,fo_pgd,fo_ngd,fo_ead"
#: the marker of white-box reference methods in the markdown table
NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}


@dataclass
class AttackTableConfig:
    """Success rate, queries and distortion of black-box attack methods under a query budget."""

    task: str = doc_field("mnist_attack_linf", "attack task family (its instances must be AttackTasks)")
    methods: str = doc_field(
        DEFAULT_METHODS,
        "comma-separated registered optimizer names, each with the values tuned for --task (or its "
        "defaults); an unregistered name is an error",
    )
    split: Literal["train", "val", "test"] = doc_field("test", "instance split; report on test, tune on val")
    instances: int = doc_field(100, "number of instances, the first ones of the split")
    trials: int = doc_field(1, "runs per instance, with seeds seed + 1000 * instance + trial")
    budget: int = doc_field(2000, "the most oracle queries per run (a run stops before exceeding it)")
    eps: float | None = doc_field(
        None, "L-inf radius passed to the task family (none: the family's default, 0.2 for mnist_attack_linf)"
    )
    seed: int = doc_field(0, "base seed; every method gets the same per-run seeds")
    threads: int = doc_field(
        1, "torch CPU threads; the same seed and thread count reproduce results bit for bit"
    )
    json: str = doc_field(
        "results/attack_table/{task}_{split}.json",
        "result JSON path ({task} and {split} are filled in); the markdown table goes beside it as .md",
    )

    def __post_init__(self) -> None:
        for name in ("instances", "trials", "threads", "budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.trials > 1000:
            raise ValueError(
                f"trials={self.trials} must be <= 1000 (run seeds are seed + 1000 * instance + trial)"
            )
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps={self.eps} must be > 0 (or none for the family's default)")

    def json_path(self) -> Path:
        return Path(self.json.replace("{task}", self.task).replace("{split}", self.split))


def parse_methods(text: str) -> list[str]:
    """The method names of ``text``, checked against the registry before anything runs."""
    names = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(names):
        raise ValueError(f"method list {text!r} has an empty item; write names separated by single commas")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"method list {text!r} repeats {repeated}")
    unknown = [n for n in names if n not in l2l.optimizer_names()]
    if unknown:
        raise ValueError(
            f"unknown method(s) {unknown}; registered optimizers: {', '.join(l2l.optimizer_names())} "
            "(pass --methods with registered names only)"
        )
    return names


def attack_tasks(config: AttackTableConfig) -> list[AttackTask]:
    """The instances to attack; refuses a family that takes no eps or whose tasks are not attacks."""
    options = {} if config.eps is None else {"eps": config.eps}
    try:
        family = l2l.make_family(config.task, **options)
    except TypeError as err:
        raise ValueError(f"task family {config.task!r} takes no eps={config.eps}; leave --eps unset") from err
    tasks = family.instances(config.split, limit=config.instances)
    if not isinstance(tasks[0], AttackTask):
        raise ValueError(
            f"task family {config.task!r} makes {type(tasks[0]).__name__} instances; the attack table needs "
            "AttackTask instances (an image, a label and a model)"
        )
    return tasks


def queries_with_checks(traj: Trajectory, optimizer: ZOOptimizer) -> int | None:
    """``success_query`` plus the queries needed to observe success (module docstring); None if none."""
    if traj.success_query is None or traj.success_step is None:
        return None
    if traj.success_step == 0:
        return traj.success_query
    return traj.success_query + (1 if optimizer.evaluates_iterate else traj.success_step)


def distortion(task: AttackTask, x: torch.Tensor) -> dict[str, float]:
    """L1, L2 and L-inf norms of the perturbation that the attacked image really carries (after clamping)."""
    delta = (task.adversarial(x.unsqueeze(0))[0] - task.image).flatten().double()
    return {name: float(torch.linalg.vector_norm(delta, ord=p)) for name, p in NORMS.items()}


def run_row(record: RunRecord, task: AttackTask, optimizer: ZOOptimizer) -> dict:
    """One run as a flat row: the head-to-head row plus both query figures and the distortion."""
    traj = record.trajectory
    row = {**record.row(), "success_query_with_checks": queries_with_checks(traj, optimizer)}
    norms = distortion(task, traj.x) if traj.success_step is not None else dict.fromkeys(NORMS)
    return {**row, **norms}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarize_method(rows: list[dict], optimizer: ZOOptimizer, dim: int, budget: int) -> dict:
    """One method's table entry from its run rows (see :func:`run_row`)."""
    hits = [r for r in rows if r["success_query"] is not None]
    plain = [r["success_query"] for r in hits]
    checked = [r["success_query_with_checks"] for r in hits]
    return {
        "white_box": bool(optimizer.white_box),
        "evaluates_iterate": bool(optimizer.evaluates_iterate),
        "runs": len(rows),
        "successes": len(hits),
        "success_rate": len(hits) / len(rows),
        "success_rate_with_checks": sum(q <= budget for q in checked) / len(rows),
        "queries_mean": _mean(plain),
        "queries_median": _median(plain),
        "queries_with_checks_mean": _mean(checked),
        "queries_with_checks_median": _median(checked),
        **{f"{name}_mean": _mean([r[name] for r in hits]) for name in NORMS},
        "final_loss_mean": float(np.mean([r["final_loss"] for r in rows])),
        "queries_per_step": optimizer.queries_per_step(dim),
        "wall_s": float(sum(r["wall_s"] for r in rows)),
        "config": optimizer.config(),
    }


def attack_table(config: AttackTableConfig, progress: bool = True) -> dict:
    """Run every method on the configured instances and return the result dict (nothing is written)."""
    with user_input():  # bad names are the command line's errors
        names = parse_methods(config.methods)  # fail fast, before the target model loads
        tasks = attack_tasks(config)
        optimizers = [(name, l2l.make_optimizer(name, task=config.task)) for name in names]
    with pinned_threads(config.threads):
        records = run_grid(
            optimizers,
            tasks,
            trials=config.trials,
            steps=config.budget,  # every step costs at least one query, so the budget binds first
            budget=config.budget,
            seed=config.seed,
            stop_at_success=True,
            progress=progress,
        )
    by_name = dict(optimizers)
    rows = [run_row(r, tasks[r.instance], by_name[r.optimizer]) for r in records]
    results = {
        name: summarize_method([r for r in rows if r["optimizer"] == name], opt, tasks[0].dim, config.budget)
        for name, opt in optimizers
    }
    settings = {k: getattr(config, k) for k in ("task", "split", "instances", "trials", "budget", "seed")}
    return {
        **settings,
        "eps": tasks[0].eps,
        "threads": config.threads,
        "version": l2l.__version__,
        "results": results,
        "per_run": rows,
    }


def markdown_table(result: dict) -> str:
    """The table, one row per method; white-box references carry :data:`WHITE_BOX_MARK`."""
    lines = [
        "| method | success rate | queries mean | queries median | with checks: mean | with checks: median "
        "| L1 | L2 | L-inf |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in result["results"].items():
        cells = [
            name + (f" {WHITE_BOX_MARK}" if res["white_box"] else ""),
            f"{res['success_rate']:.1%} ({res['successes']}/{res['runs']})",
            fmt_cell(res["queries_mean"], ".1f"),
            fmt_cell(res["queries_median"], ".1f"),
            fmt_cell(res["queries_with_checks_mean"], ".1f"),
            fmt_cell(res["queries_with_checks_median"], ".1f"),
            *(fmt_cell(res[f"{n}_mean"], ".3f") for n in NORMS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """A heading with the settings, the table, and how to read it."""
    r = result
    eps = "none" if r["eps"] is None else r["eps"]
    note = (
        "Success rate over all runs; queries and distortions (norms of the clamped perturbation) over "
        "the successful runs. Queries without checks: spent to reach the first successful iterate; with "
        "checks: plus the queries that observe success (1 when every step queries its own iterate, else "
        f"1 per step). {WHITE_BOX_MARK}: white-box reference (true gradients; 1 query = 1 forward and "
        "backward pass), not a black-box attack."
    )
    return "\n".join(
        [
            f"## {r['task']} ({r['split']}): {r['instances']} images x {r['trials']} trials",
            "",
            f"budget {r['budget']} queries per run, eps {eps}, seed {r['seed']}, l2l {r['version']}",
            "",
            markdown_table(r),
            "",
            note,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, build the table, print it, and write the JSON and markdown atomically."""
    config = parse_config(AttackTableConfig, argv)
    result = attack_table(config)
    path = config.json_path()
    write_json_atomic(path, result)
    report = markdown_report(result)
    write_text_atomic(path.with_suffix(".md"), report)
    print(report)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    run_cli(main)
