"""Speed benchmarks, reported as ratios measured in one process.

    python -m eval.bench            # table on stdout, JSON in results/bench.json
    python -m eval.bench --json     # the JSON on stdout instead of the table

``attack_overhead``: a 200-step ZO-Adam MNIST attack through ``l2l.run`` against the bare target-model
forward passes for the same number of queries (same batch shapes). The ratio is what the framework
(oracle, estimator, optimizer, trajectory bookkeeping) costs on top of the model. Target: <= 1.25.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

import l2l
from l2l.common.cli import run_cli
from l2l.common.config import doc_field, parse_config, parse_float_list
from l2l.common.io import write_json_atomic
from l2l.learned.meta import MetaConfig, MetaTrainer
from l2l.learned.schedule import ZO_LSTM_SCHEDULE

ATTACK_OVERHEAD_TARGET = 1.25
#: a full two-stage MNIST meta-training must fit in this many seconds on 2 CPU cores
TRAINING_TARGET_S = 20 * 60


@dataclass
class BenchConfig:
    """Time the framework against the bare model it queries; print and save the ratios."""

    steps: int = doc_field(200, "ZO-Adam steps in the attack benchmark")
    q: int = doc_field(20, "query directions per step (q + 1 queries per step)")
    repeats: int = doc_field(5, "timed repetitions of each measurement; the median is reported")
    threads: int = doc_field(1, "torch CPU threads")
    out: str = doc_field("results/bench.json", "where the JSON report is written")
    meta_iterations: int = doc_field(20, "meta-iterations timed per ZO-LSTM stage (0 skips that benchmark)")
    json: bool = doc_field(False, "print the JSON report instead of the table")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one untimed warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, timed alternately so that drifting machine load hits both."""
    a()
    b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def bench_attack_overhead(cfg: BenchConfig) -> dict:
    """``l2l.run`` of tuned ZO-Adam on a val attack instance vs. bare forward passes of its model."""
    task = l2l.make_task("mnist_attack", split="val", index=0)
    optimizer = l2l.make_optimizer("zo_adam", task="mnist_attack", q=cfg.q)
    per_step = optimizer.queries_per_step(task.dim)
    # the same kind of inputs a step sends: images perturbed by mu-sized directions
    noise = torch.randn(per_step, task.dim, generator=torch.Generator().manual_seed(0))
    images = task.adversarial(optimizer.mu * noise)

    def bare() -> None:
        with torch.no_grad():
            for _ in range(cfg.steps):
                task.model(images)

    run_s, bare_s = interleaved_medians(
        lambda: l2l.run(optimizer, task, cfg.steps, seed=0), bare, cfg.repeats
    )
    queries = cfg.steps * per_step
    return {
        "run_s": run_s,
        "bare_forward_s": bare_s,
        "ratio": run_s / bare_s,
        "target_ratio": ATTACK_OVERHEAD_TARGET,
        "meets_target": run_s / bare_s <= ATTACK_OVERHEAD_TARGET,
        "queries": queries,
        "queries_per_s": queries / run_s,
        "bare_queries_per_s": queries / bare_s,
    }


def time_meta_iterations(trainer: MetaTrainer, stage: str, n: int) -> float:
    """Median seconds of one meta-iteration (``unroll`` optimizee steps + backward + Adam) in ``stage``."""
    trainer.begin_stage(stage)
    trainer.meta_step()  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        trainer.meta_step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_meta_training(cfg: BenchConfig) -> dict:
    """Seconds per meta-iteration of both stages on mnist_attack, and the default training's total.

    The total is estimated from these measurements with the default ``train.zo_lstm`` schedule:
    iterations of each stage plus every validation (each a 200-step ``l2l.run`` per val instance).
    """
    defaults, unroll = ZO_LSTM_SCHEDULE, MetaConfig().unroll
    family = l2l.make_family("mnist_attack")
    trainer = MetaTrainer(MetaConfig(), family.instances("train", limit=20))
    update_s = time_meta_iterations(trainer, "update", cfg.meta_iterations)
    query_s = time_meta_iterations(trainer, "query", cfg.meta_iterations)
    val_task = family.instance("val", 0)
    val_run_s = median_seconds(lambda: l2l.run(trainer.frozen(), val_task, family.default_steps, seed=0), 1)
    validations = sum(
        n // defaults.val_every + 2 for n in (defaults.update_iterations, defaults.query_iterations)
    )
    validations += len(parse_float_list(defaults.alpha_grid, "alpha_grid"))  # the final choice of alpha
    total = (
        defaults.update_iterations * update_s
        + defaults.query_iterations * query_s
        + validations * defaults.val_instances * val_run_s
    )
    return {
        "unroll": unroll,
        "stage1_s_per_meta_iteration": update_s,
        "stage2_s_per_meta_iteration": query_s,
        "val_run_s": val_run_s,
        "default_schedule": {
            "update_iterations": defaults.update_iterations,
            "query_iterations": defaults.query_iterations,
            "validations": validations,
            "val_instances": defaults.val_instances,
        },
        "estimated_full_training_s": total,
        "target_s": TRAINING_TARGET_S,
        "meets_target": total <= TRAINING_TARGET_S,
    }


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(BenchConfig, argv)
    torch.set_num_threads(cfg.threads)
    report = {
        "config": asdict(cfg),
        "version": l2l.__version__,
        "torch": torch.__version__,
        "attack_overhead": bench_attack_overhead(cfg),
    }
    if cfg.meta_iterations > 0:
        report["meta_training"] = bench_meta_training(cfg)
    write_json_atomic(cfg.out, report)
    if cfg.json:
        print(json.dumps(report, indent=2))
    else:
        a = report["attack_overhead"]
        print(f"{'benchmark':<34}{'value':>12}{'target':>10}")
        print(f"{'attack run / bare forwards':<34}{a['ratio']:>12.3f}{'<= ' + str(a['target_ratio']):>10}")
        print(f"{'attack queries per second':<34}{a['queries_per_s']:>12.0f}")
        print(f"{'bare model queries per second':<34}{a['bare_queries_per_s']:>12.0f}")
        if "meta_training" in report:
            m = report["meta_training"]
            print(f"{'ZO-LSTM stage 1 s / meta-iteration':<34}{m['stage1_s_per_meta_iteration']:>12.3f}")
            print(f"{'ZO-LSTM stage 2 s / meta-iteration':<34}{m['stage2_s_per_meta_iteration']:>12.3f}")
            target = f"<= {m['target_s']}"
            print(
                f"{'full default training s (est.)':<34}{m['estimated_full_training_s']:>12.0f}{target:>10}"
            )
        print(f"(threads={cfg.threads}; report in {cfg.out})")
    return report


if __name__ == "__main__":
    run_cli(main)
