"""Head-to-head comparison of ZO optimizers: ``python -m eval.compare --task T --methods a,b,c=x.pt``.

Every optimizer runs on the same instances of the chosen split, from the same starting points, with the
same per-trial seeds; the command prints a markdown table and writes JSON, CSV (summary and per run),
markdown and PNG plots beside the ``--out`` path, and logs the same figures to wandb (offline by
default). Library use: ``compare(CompareConfig(...))`` returns the result dict without printing.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import l2l
from eval import report
from eval.headtohead import run_grid, summarize_all
from eval.output import Written, launch_and_write
from eval.specs import build_optimizers, parse_optimizers
from eval.wandb_log import log_comparison
from l2l.common.cli import run_cli, user_input
from l2l.common.config import doc_field, parse_config
from l2l.common.options import (
    GridOptions,
    LockstepOptions,
    OutputOptions,
    ShardOptions,
    default_of,
    pinned_threads,
)
from l2l.estimators import check_mu, check_q
from l2l.optimizers.core.base import ZOOptimizer

#: steps per run when neither --steps nor --budget is given; deliberately the same for every family (not
#: TaskFamily.default_steps, the training horizon: binary_classification trains on 500 but is reported at 200)
DEFAULT_STEPS = 200


@dataclass
class CompareConfig(LockstepOptions, ShardOptions, OutputOptions, GridOptions):
    """Compare ZO optimizers head-to-head on held-out instances of one task family."""

    methods: str = default_of(
        GridOptions,
        "methods",
        "zo_sgd,zo_signsgd,zo_adam",
        "comma-separated optimizers: registered names (tuned for --task; --q and --mu override) "
        "and label=checkpoint entries loaded as saved (l2l.loading.parse_reference)",
    )
    trials: int = default_of(GridOptions, "trials", 2)
    steps: int | None = doc_field(
        None,
        "the most optimizer steps per run (none: 200 without --budget; with --budget, as many as it "
        "allows, so methods with cheaper steps take more of them)",
    )
    budget: int | None = doc_field(
        None,
        "total oracle queries per run; a run stops before the step that would exceed it (none: no limit)",
    )
    q: int = doc_field(20, "query directions per step for registered optimizers (a step costs q + 1 queries)")
    mu: float | None = doc_field(None, "smoothing radius for registered optimizers (none: tuned or default)")
    out: str = default_of(
        OutputOptions,
        "out",
        "results/compare/{task}_{split}.json",
        "result JSON path ({task} and {split} are filled in); out.json also writes out.csv, out_runs.csv, "
        "out.md, out_loss_vs_iter.png and out_loss_vs_queries.png beside it, and the wandb run folder",
    )
    stop_at_success: bool = doc_field(False, "end each run at its first successful iterate")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps={self.steps} must be >= 0 (or none)")
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"budget={self.budget} must be >= 0 (or none for no limit)")
        check_q(self.q)
        if self.mu is not None:
            check_mu(self.mu)

    def step_limit(self) -> int:
        """The step cap of a run: ``steps``, else 200, else (with a budget) the budget itself.

        Every step costs at least one query, so a cap equal to the budget never binds before it.
        """
        if self.steps is not None:
            return self.steps
        return DEFAULT_STEPS if self.budget is None else self.budget


def compare(config: CompareConfig, progress: bool = True) -> dict:
    """Run the comparison that ``config`` describes and return its result dict (nothing is written).

    Args:
        config: what to compare, on what, and how long.
        progress: show a progress bar over all runs.
    """
    with user_input():  # bad names and checkpoints are the command line's errors
        specs = parse_optimizers(config.methods, config.task, config.q, config.mu)  # fail fast on names
        optimizers = build_optimizers(specs)
    return head_to_head(config, optimizers, {spec.label: spec.source for spec in specs}, progress)


def head_to_head(
    config: CompareConfig,
    optimizers: list[tuple[str, ZOOptimizer]],
    sources: dict[str, str],
    progress: bool = True,
) -> dict:
    """Run already-built (label, optimizer) pairs as ``config`` says (its ``methods`` is not read).

    For callers that build optimizers ``--methods`` cannot name (``eval.policy_bound``); ``sources``
    records where each label came from.
    """
    with user_input():
        family = l2l.make_family(config.task, device=config.device)
        tasks = family.instances(config.split, limit=config.instances)
    with pinned_threads(config.threads):
        records = run_grid(
            optimizers,
            tasks,
            trials=config.trials,
            steps=config.step_limit(),
            budget=config.budget,
            seed=config.seed,
            stop_at_success=config.stop_at_success,
            progress=progress,
            vectorize=config.vectorize,
        )
    settings = {k: getattr(config, k) for k in ("task", "split", "instances", "trials", "q", "budget")}
    settings["steps"] = config.step_limit()
    return {
        **settings,
        "mu": config.mu,
        "seed": config.seed,
        "version": l2l.__version__,
        "threads": config.threads,
        "stop_at_success": config.stop_at_success,
        "vectorize": config.vectorize,
        "device": config.device,
        "sources": sources,
        "results": summarize_all(records, optimizers, tasks[0].dim),
        "per_run": [r.row() for r in records],
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run the comparison, print the table, write every output; returns the result.

    With ``--workers N`` (or under torchrun) the runs are sharded over N processes and rank 0 writes
    (:mod:`eval.distributed`); the result is the serial one, wall times aside.
    """
    return launch_and_write(compare, write_comparison, parse_config(CompareConfig, argv))


def write_comparison(result: dict, config: CompareConfig) -> Written:
    """Rank 0's part: the JSON, CSVs, markdown and plots beside ``--out``, and the wandb log."""
    paths = report.OutputPaths.beside(config.out_path())
    report.write_all(result, paths)
    log = functools.partial(_log, result, paths)
    return Written(report.markdown_report(result), dataclasses.astuple(paths), log)


def _log(result: dict, paths: report.OutputPaths, mode: str, project: str, config: dict) -> Path | None:
    return log_comparison(result, paths, mode=mode, project=project, config=config)


if __name__ == "__main__":
    run_cli(main)
