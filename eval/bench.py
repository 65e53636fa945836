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
from l2l.common.config import doc_field, parse_config
from l2l.common.io import write_json_atomic

ATTACK_OVERHEAD_TARGET = 1.25


@dataclass
class BenchConfig:
    """Time the framework against the bare model it queries; print and save the ratios."""

    steps: int = doc_field(200, "ZO-Adam steps in the attack benchmark")
    q: int = doc_field(20, "query directions per step (q + 1 queries per step)")
    repeats: int = doc_field(5, "timed repetitions of each measurement; the median is reported")
    threads: int = doc_field(1, "torch CPU threads")
    out: str = doc_field("results/bench.json", "where the JSON report is written")
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


def bench_attack_overhead(cfg: BenchConfig) -> dict:
    """``l2l.run`` of tuned ZO-Adam on a val attack instance vs. bare forward passes of its model."""
    task = l2l.make_task("mnist_attack", split="val", index=0)
    optimizer = l2l.make_optimizer("zo_adam", task="mnist_attack", q=cfg.q)
    per_step = optimizer.queries_per_step(task.dim)
    images = task.image.unsqueeze(0).expand(per_step, *task.image.shape).contiguous()

    def bare() -> None:
        with torch.no_grad():
            for _ in range(cfg.steps):
                task.model(images)

    run_s = median_seconds(lambda: l2l.run(optimizer, task, cfg.steps, seed=0), cfg.repeats)
    bare_s = median_seconds(bare, cfg.repeats)
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


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(BenchConfig, argv)
    torch.set_num_threads(cfg.threads)
    report = {
        "config": asdict(cfg),
        "version": l2l.__version__,
        "torch": torch.__version__,
        "attack_overhead": bench_attack_overhead(cfg),
    }
    write_json_atomic(cfg.out, report)
    if cfg.json:
        print(json.dumps(report, indent=2))
    else:
        a = report["attack_overhead"]
        print(f"{'benchmark':<34}{'value':>12}{'target':>10}")
        print(f"{'attack run / bare forwards':<34}{a['ratio']:>12.3f}{'<= ' + str(a['target_ratio']):>10}")
        print(f"{'attack queries per second':<34}{a['queries_per_s']:>12.0f}")
        print(f"{'bare model queries per second':<34}{a['bare_queries_per_s']:>12.0f}")
        print(f"(threads={cfg.threads}; report in {cfg.out})")
    return report


if __name__ == "__main__":
    main()
