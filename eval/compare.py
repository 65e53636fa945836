"""Head-to-head comparison of ZO optimizers: ``python -m eval.compare --task T --optimizers a,b,c=x.pt``.

Every optimizer runs on the same instances of the chosen split, from the same starting points, with the
same per-trial seeds; the command prints a markdown table and writes JSON, CSV (summary and per run),
markdown and PNG plots beside the ``--json`` path, and logs the same figures to wandb (offline by
default). Library use: ``compare(CompareConfig(...))`` returns the result dict without printing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

import l2l
from eval import report
from eval.distributed import WORKERS_DEFAULT, WORKERS_HELP, check_workers, is_main, launch
from eval.headtohead import run_grid, summarize_all
from eval.specs import build_optimizers, parse_optimizers
from eval.wandb_log import log_comparison
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config
from l2l.common.device import DEVICE_HELP, resolve_device
from l2l.estimators import check_mu, check_q
from l2l.optimizers.core.base import ZOOptimizer

#: steps per run when neither --steps nor --budget is given; deliberately the same for every family (not
#: TaskFamily.default_steps, the training horizon: binary_classification trains on 500 but is reported at 200)
DEFAULT_STEPS = 200


@dataclass
class CompareConfig:
    """Compare ZO optimizers head-to-head on held-out instances of one task family."""

    task: str = doc_field("mnist_attack", "registered task family (see l2l.family_names())")
    optimizers: str = doc_field(
        "zo_sgd,zo_signsgd,zo_adam",
        "comma-separated optimizers: registered names (tuned for --task; --q and --mu override) "
        "and label=checkpoint entries loaded as saved",
    )
    split: Literal["train", "val", "test"] = doc_field("test", "instance split; report on test, tune on val")
    instances: int = doc_field(20, "number of instances, the first ones of the split")
    trials: int = doc_field(2, "runs per instance, with seeds seed + 1000 * instance + trial")
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
    seed: int = doc_field(0, "base seed; every optimizer gets the same per-run seeds")
    json: str = doc_field(
        "results/compare/{task}_{split}.json",
        "result JSON path ({task} and {split} are filled in); out.json also writes out.csv, out_runs.csv, "
        "out.md, out_loss_vs_iter.png and out_loss_vs_queries.png beside it, and the wandb run folder",
    )
    threads: int = doc_field(
        1, "torch CPU threads; the same seed and thread count reproduce results bit for bit"
    )
    workers: int = doc_field(WORKERS_DEFAULT, WORKERS_HELP)
    vectorize: int = doc_field(
        1,
        "B > 1 runs the instances of one optimizer and trial B at a time in lockstep (l2l.run_many: one "
        "stacked model forward per step) for optimizers that support it (zo_sgd, zo_signsgd, zo_adam, nes, "
        "spsa); the others run one at a time. Results match the serial run to float tolerance, not bit "
        "for bit (a bigger batch may round differently); with --workers a group is the shard unit",
    )
    wandb: Literal["online", "offline", "disabled"] = doc_field(
        "offline", "wandb mode: offline needs no account or network; online uploads"
    )
    wandb_project: str = doc_field("l2l-zo", "wandb project name")
    stop_at_success: bool = doc_field(False, "end each run at its first successful iterate")
    device: str = doc_field("cpu", DEVICE_HELP)

    def __post_init__(self) -> None:
        resolve_device(self.device)  # refuse cuda on a machine without one, before any work
        check_at_least(self, ("instances", "trials", "threads", "vectorize"))
        if self.trials > 1000:
            raise ValueError(
                f"trials={self.trials} must be <= 1000 (run seeds are seed + 1000 * instance + trial)"
            )
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps={self.steps} must be >= 0 (or none)")
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"budget={self.budget} must be >= 0 (or none for no limit)")
        check_q(self.q)
        if self.mu is not None:
            check_mu(self.mu)
        check_workers(self.workers)

    def step_limit(self) -> int:
        """The step cap of a run: ``steps``, else 200, else (with a budget) the budget itself.

        Every step costs at least one query, so a cap equal to the budget never binds before it.
        """
        if self.steps is not None:
            return self.steps
        return DEFAULT_STEPS if self.budget is None else self.budget

    def json_path(self) -> Path:
        """``json`` with its ``{task}`` and ``{split}`` placeholders filled in."""
        return Path(self.json.replace("{task}", self.task).replace("{split}", self.split))


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compare(config: CompareConfig, progress: bool = True) -> dict:
    """Run the comparison that ``config`` describes and return its result dict (nothing is written).

    Args:
        config: what to compare, on what, and how long.
        progress: show a progress bar over all runs.
    """
    with user_input():  # bad names and checkpoints are the command line's errors
        specs = parse_optimizers(config.optimizers, config.task, config.q, config.mu)  # fail fast on names
        optimizers = build_optimizers(specs)
    return head_to_head(config, optimizers, {spec.label: spec.source for spec in specs}, progress)


def head_to_head(
    config: CompareConfig,
    optimizers: list[tuple[str, ZOOptimizer]],
    sources: dict[str, str],
    progress: bool = True,
) -> dict:
    """Run already-built (label, optimizer) pairs as ``config`` says (its ``optimizers`` is not read).

    For callers that build optimizers ``--optimizers`` cannot name (``eval.policy_bound``); ``sources``
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
    config = parse_config(CompareConfig, argv)
    return launch(_compare_and_write, config, config.workers)


def _compare_and_write(config: CompareConfig) -> dict:
    """One rank's part of :func:`main`: every rank compares, rank 0 alone writes and prints."""
    result = compare(config)
    if not is_main():
        return result
    paths = report.OutputPaths.beside(config.json_path())
    report.write_all(result, paths)
    print(report.markdown_report(result))
    wandb_config = {**dataclasses.asdict(config), "json": str(paths.json)}
    run_dir = log_comparison(
        result, paths, mode=config.wandb, project=config.wandb_project, config=wandb_config
    )
    print(f"wrote {paths.json} and its CSV, markdown and plots beside it")
    if run_dir is not None:
        upload = f" (upload later with: wandb sync {run_dir})" if config.wandb == "offline" else ""
        print(f"wandb run: {run_dir}{upload}")
    return result


if __name__ == "__main__":
    run_cli(main)
