"""Speed benchmarks, reported as ratios measured in one process.

    python -m eval.bench            # table on stdout, JSON in results/bench.json (about 4 minutes)
    python -m eval.bench --quick    # the same figures from tiny runs, in seconds (what the test runs)
    python -m eval.bench --stdout json   # the JSON on stdout instead of the table

``attack_overhead``: a 200-step ZO-Adam MNIST attack (q + 1 queries per step) through ``l2l.run``
against the bare target-model forward passes for the same queries (same batch shapes), and the same for
Square (one query per step). The ratio is what the framework (oracle, estimator, optimizer, trajectory
bookkeeping) costs on top of the model; 1.0 is the physical limit. ``breakdown`` splits ZO-Adam's
surplus: ``record`` is the one-row forward per step that records f(x_k) (the new iterate is never a
query of its own, and a row of a batched forward may differ from a one-row forward in the last bits,
so reusing the next step's base query would change recorded values) and ``rest`` the Python around
the model. Square's records are recalled from its own queries (``Oracle.recall``), so it pays none.

``meta_training``: seconds per meta-iteration per task at K = 1, 4, 16 (``--meta-batches``) and the
estimated default MNIST ZO-LSTM training, serial and on 2 ranks (see :func:`bench_meta_training`).
``workers``: the speed-up of ``eval.compare --workers 2`` over the serial run on a small MNIST grid,
process start-up included. ``many``: rows (queries) per second of
``l2l.run_many`` stepping B mnist_attack attacks in lockstep (one model forward per step for all)
against ``l2l.run`` on each in turn, and their ratio (``--many-instances``; a 2-core CPU gains little
from bigger batches, a GPU much more). Every figure is measured on whatever else
the machine runs at the time: on a shared machine they are contaminated by its other jobs.
``batched_square``: a batched Square attack on 100 MNIST test images at 2,000 queries against the bare
batched forwards of the same rows (target :data:`BATCHED_SQUARE_TARGET`) and against one image at a
time (:func:`bench_batched_square`). ``imagenet_table``: the ImageNet L-inf attack table's wall time,
one image at a time and batched (:func:`bench_imagenet_table`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

import l2l
from eval import compare
from eval.attack_table import AttackTableConfig, attack_table
from l2l.common import distributed
from l2l.common.cli import run_cli
from l2l.common.config import check_at_least, doc_field, parse_config, parse_float_list
from l2l.common.io import write_json_atomic
from l2l.common.options import DeviceOptions, OutputOptions, default_of
from l2l.learned import MetaConfig, MetaTrainer
from l2l.learned.schedule import ZO_LSTM_SCHEDULE
from l2l.run_many import agree

ATTACK_OVERHEAD_TARGET = 1.10
#: a batched Square attack may cost at most this multiple of the bare batched forwards of its rows
BATCHED_SQUARE_TARGET = 1.5
#: a full two-stage MNIST meta-training must fit in this many seconds on 2 CPU cores
TRAINING_TARGET_S = 20 * 60
#: ... and within this many on 2 ranks (issue 15's goal)
TRAINING_TARGET_2_RANKS_S = 600
#: what ``--quick`` sets (tiny runs: the figures are noisy, the plumbing is the same)
QUICK = {
    "steps": 20, "repeats": 1, "meta_iterations": 1, "meta_batches": "1,2", "unroll": 4, "val_steps": 10,
    "compare_instances": 2, "compare_steps": 5, "many_instances": 2, "many_steps": 5,
    "square_instances": 3, "square_budget": 20, "imagenet_images": 1, "imagenet_budget": 4,
}  # fmt: skip
#: the full-size values of the same options (None: resolved by the benchmark, as its help says). These
#: options default to None in :class:`BenchConfig`, so that a value given on the command line wins over
#: ``--quick`` even when it equals the full-size one.
FULL = {
    "steps": 200, "repeats": 5, "meta_iterations": 20, "meta_batches": "1,4,16", "unroll": None,
    "val_steps": None, "compare_instances": 4, "compare_steps": 100, "many_instances": 8, "many_steps": 50,
    "square_instances": 100, "square_budget": 2000, "imagenet_images": 17, "imagenet_budget": 10_000,
}  # fmt: skip


def sized(what: str, name: str) -> str:
    """The help of a size option: ``what``, then its full-size and ``--quick`` values."""
    full = "the default" if FULL[name] is None else FULL[name]
    return f"{what} (none: {full}; {QUICK[name]} with --quick)"


@dataclass
class BenchConfig(DeviceOptions):
    """Time the framework against the bare model it queries; print and save the ratios."""

    steps: int | None = doc_field(None, sized("attack steps in the attack benchmark", "steps"))
    q: int = doc_field(20, "ZO-Adam query directions per step (q + 1 queries per step)")
    repeats: int | None = doc_field(
        None, sized("timed repetitions of each measurement; the median is reported", "repeats")
    )
    out: str = default_of(OutputOptions, "out", "results/bench.json", "where the JSON report is written")
    meta_iterations: int | None = doc_field(
        None,
        sized("meta-iterations timed per ZO-LSTM stage at K = 1, and meta_iterations // K at K (0 skips)",
              "meta_iterations"),
    )  # fmt: skip
    meta_batches: str | None = doc_field(
        None, sized("meta-batch sizes K whose seconds per task are timed", "meta_batches")
    )
    unroll: int | None = doc_field(
        None, sized("optimizee steps of a timed meta-iteration, scaled to the default unroll", "unroll")
    )
    val_steps: int | None = doc_field(
        None, sized("steps of the timed validation run, scaled to the family's horizon", "val_steps")
    )
    compare_instances: int | None = doc_field(
        None, sized("MNIST test instances of the --workers benchmark (0 skips it)", "compare_instances")
    )
    compare_steps: int | None = doc_field(
        None, sized("steps per run of the --workers benchmark", "compare_steps")
    )
    compare_task: str = doc_field("mnist_attack", "task family of the --workers benchmark")
    many_instances: int | None = doc_field(
        None,
        sized("mnist_attack val instances run by l2l.run_many in lockstep vs. one at a time (0 skips it)",
              "many_instances"),
    )  # fmt: skip
    many_steps: int | None = doc_field(None, sized("steps per run of the run_many benchmark", "many_steps"))
    square_instances: int | None = doc_field(
        None,
        sized(
            "mnist_attack_linf test images of the batched Square benchmark (0 skips it)", "square_instances"
        ),
    )
    square_budget: int | None = doc_field(
        None, sized("queries per image of the batched Square benchmark", "square_budget")
    )
    imagenet_images: int | None = doc_field(
        None,
        sized(
            "imagenet_attack_linf test images of the ImageNet table benchmark (0 skips it)", "imagenet_images"
        ),
    )  # fmt: skip
    imagenet_budget: int | None = doc_field(
        None, sized("queries per image of the ImageNet table benchmark", "imagenet_budget")
    )
    quick: bool = doc_field(
        False, "tiny runs in seconds (the sizes above that are not given; the test uses it)"
    )
    stdout: Literal["table", "json"] = doc_field("table", "what to print: the table or the JSON report")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in QUICK:  # the options not given: tiny with --quick, full-size otherwise
            if getattr(self, name) is None:
                setattr(self, name, (QUICK if self.quick else FULL)[name])
        check_at_least(self, ("steps", "q", "repeats", "threads"))
        self.meta_batch_list()  # a bad list fails here, before anything is timed
        if self.compare_instances > 0 and self.compare_steps < 1:
            raise ValueError(f"compare_steps={self.compare_steps} must be >= 1")
        if self.many_instances > 0 and self.many_steps < 1:
            raise ValueError(f"many_steps={self.many_steps} must be >= 1")
        if self.square_instances > 0 and self.square_budget < 1:
            raise ValueError(f"square_budget={self.square_budget} must be >= 1")
        if self.imagenet_images > 0 and self.imagenet_budget < 1:
            raise ValueError(f"imagenet_budget={self.imagenet_budget} must be >= 1")

    def meta_batch_list(self) -> list[int]:
        """The meta-batch sizes of ``meta_batches``, each an integer >= 1."""
        sizes = [float(k) for k in parse_float_list(self.meta_batches, "meta_batches")]
        if not sizes or any(k < 1 or k != int(k) for k in sizes):
            raise ValueError(
                f"meta_batches={self.meta_batches!r} must list integers >= 1, comma-separated (e.g. 1,4,16)"
            )
        return [int(k) for k in sizes]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one untimed warm-up run."""
    return interleaved_medians([fn], repeats)[0]


def interleaved_medians(fns: list[Callable[[], object]], repeats: int, warm_up: bool = True) -> list[float]:
    """Median seconds of each of ``fns``, timed in turn so that drifting machine load hits them all.

    Args:
        fns: the functions to time; each is called once untimed first (warm-up) unless ``warm_up`` is False.
        repeats: timed calls of each.
        warm_up: the untimed first calls (skip them for runs long enough to need none).
    """
    for fn in fns if warm_up else []:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def bare_forwards(model: torch.nn.Module, images: torch.Tensor, calls: int) -> Callable[[], None]:
    """``calls`` forward passes of ``model`` on ``images``, gradient-free: the physical limit of a run."""

    def forwards() -> None:
        with torch.no_grad():
            for _ in range(calls):
                model(images)

    return forwards


def bench_attack_overhead(cfg: BenchConfig) -> dict:
    """``l2l.run`` of tuned ZO-Adam and of Square on a val attack instance vs. bare forwards of its model.

    ZO-Adam's surplus is split into its per-step one-row record forward and the rest (module docstring).
    """
    task = l2l.make_family("mnist_attack_linf", device=cfg.device).instance("val", 0)
    adam = l2l.make_optimizer("zo_adam", task="mnist_attack_linf", q=cfg.q)
    square = l2l.make_optimizer("square", task="mnist_attack_linf")
    per_step = adam.queries_per_step(task.dim)
    # the same kind of inputs a step sends: images perturbed by mu-sized directions
    noise = torch.randn(per_step, task.dim, generator=torch.Generator().manual_seed(0)).to(task.device)
    batch = task.adversarial(adam.mu * noise)
    row = task.adversarial(torch.zeros(1, task.dim, device=task.device))
    adam_s, square_s, batch_s, row_s = interleaved_medians(
        [
            lambda: l2l.run(adam, task, cfg.steps, seed=0),
            lambda: l2l.run(square, task, cfg.steps, seed=0),
            bare_forwards(task.model, batch, cfg.steps),
            bare_forwards(task.model, row, cfg.steps),
        ],
        cfg.repeats,
    )
    ratio = adam_s / batch_s
    return {
        "run_s": adam_s,
        "bare_forward_s": batch_s,
        "ratio": ratio,
        "breakdown": {"record": row_s / batch_s, "rest": (adam_s - batch_s - row_s) / batch_s},
        "square_ratio": square_s / row_s,
        "square_run_s": square_s,
        "square_bare_forward_s": row_s,
        "target_ratio": ATTACK_OVERHEAD_TARGET,
        "meets_target": ratio <= ATTACK_OVERHEAD_TARGET,
        "square_meets_target": square_s / row_s <= ATTACK_OVERHEAD_TARGET,
        "queries": cfg.steps * per_step,
        "queries_per_s": cfg.steps * per_step / adam_s,
        "bare_queries_per_s": cfg.steps * per_step / batch_s,
    }


def time_meta_iterations(trainer: MetaTrainer, stage: str, n: int, warm_up: bool = True) -> float:
    """Median seconds of one meta-iteration (``unroll`` optimizee steps + backward + Adam) in ``stage``.

    Args:
        trainer: the meta-trainer.
        stage: the stage to time.
        n: timed meta-iterations.
        warm_up: run one untimed meta-iteration first.
    """
    trainer.begin_stage(stage)
    if warm_up:
        trainer.meta_step()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        trainer.meta_step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stage_seconds(cfg: BenchConfig, meta_batch: int, iterations: int) -> dict[str, float]:
    """Seconds of one meta-iteration of each ZO-LSTM stage on mnist_attack at ``meta_batch`` tasks.

    Inside a process group (see :func:`ranked_stage_seconds`) every rank unrolls its share of the
    meta-batch and all-reduces the meta-gradients, as ``train.zo_lstm`` does under torchrun. Runs shorter
    than the default unroll (``--unroll``, as ``--quick`` sets) are scaled linearly to it.
    """
    meta = MetaConfig()
    timed = MetaConfig(unroll=min(meta.unroll, cfg.unroll or meta.unroll), meta_batch=meta_batch)
    family = l2l.make_family("mnist_attack", device=cfg.device)
    trainer = MetaTrainer(timed, family.instances("train", limit=20))
    scale = meta.unroll / timed.unroll  # a meta-iteration's cost grows with its unroll
    return {
        stage: time_meta_iterations(trainer, stage, iterations, not cfg.quick) * scale
        for stage in trainer.stage_names()
    }


def ranked_stage_seconds(args: tuple[BenchConfig, int, int]) -> dict[str, float]:
    """:func:`stage_seconds` on one rank of a ``--workers``-style gloo group (rank 0's figures return)."""
    cfg, meta_batch, iterations = args
    torch.set_num_threads(cfg.threads)
    return stage_seconds(cfg, meta_batch, iterations)


def schedule_seconds(per_iteration: dict[str, float], val_run_s: float, ranks: int) -> float:
    """The default ``train.zo_lstm`` schedule's seconds: both stages' iterations and every validation.

    The validations' runs are split over the ranks (``validate(sharded=True)``), so a rank runs
    ceil(val_instances / ranks) of them.
    """
    defaults = ZO_LSTM_SCHEDULE
    validations = sum(
        n // defaults.val_every + 2 for n in (defaults.update_iterations, defaults.query_iterations)
    )
    validations += len(parse_float_list(defaults.alpha_grid, "alpha_grid"))  # the final choice of alpha
    iterations = {"update": defaults.update_iterations, "query": defaults.query_iterations}
    runs_per_rank = -(-defaults.val_instances // ranks)
    return sum(iterations[s] * per_iteration[s] for s in iterations) + validations * runs_per_rank * val_run_s


def bench_meta_training(cfg: BenchConfig) -> dict:
    """Seconds per meta-iteration per task on mnist_attack at each ``--meta-batches`` K, and the schedule.

    K tasks of one meta-iteration are unrolled one after another (the ZO-LSTM's trajectories are not
    stacked into one model pass), so the per-task figure shows what a larger meta-batch saves (the one
    Adam step and the bookkeeping) and no more. At K, ``meta_iterations // K`` iterations are timed (at
    least one), so every K times about the same number of unrolled windows. The default schedule
    (K = 1) is estimated serially from these figures, and on 2 ranks from a 2-process gloo group that
    unrolls K = 2 (one task per rank: the same iterations, twice the tasks) with the validations split
    over the ranks.
    """
    seconds = {k: stage_seconds(cfg, k, max(1, cfg.meta_iterations // k)) for k in cfg.meta_batch_list()}
    family = l2l.make_family("mnist_attack", device=cfg.device)
    frozen = MetaTrainer(MetaConfig(), family.instances("train", limit=1)).frozen()
    val_task, horizon = family.instance("val", 0), family.default_steps
    val_steps = min(horizon, cfg.val_steps or horizon)
    val_run_s = median_seconds(lambda: l2l.run(frozen, val_task, val_steps, seed=0), 1) * horizon / val_steps
    ranked = distributed.launch(ranked_stage_seconds, (cfg, 2, max(1, cfg.meta_iterations // 2)), workers=2)
    serial = schedule_seconds(seconds.get(1) or stage_seconds(cfg, 1, cfg.meta_iterations), val_run_s, 1)
    two_ranks = schedule_seconds(ranked, val_run_s, 2)
    per_task = {str(k): {f"{s}_s_per_task": v / k for s, v in stages.items()}
                for k, stages in seconds.items()}  # fmt: skip
    return {
        "unroll": MetaConfig().unroll,
        "per_meta_batch": per_task,
        "two_ranks_k2_s_per_meta_iteration": ranked,
        "val_run_s": val_run_s,
        "default_schedule": dataclasses.asdict(ZO_LSTM_SCHEDULE),
        "estimated_full_training_s": serial,
        "estimated_full_training_2_ranks_s": two_ranks,
        "target_s": TRAINING_TARGET_S,
        "target_2_ranks_s": TRAINING_TARGET_2_RANKS_S,
        "meets_target": serial <= TRAINING_TARGET_S,
        "meets_target_2_ranks": two_ranks <= TRAINING_TARGET_2_RANKS_S,
    }


def bench_workers(cfg: BenchConfig) -> dict:
    """Wall time of one small ``eval.compare`` grid, serial and with ``--workers 2``, and the ratio.

    Each is the whole command (task loading and, for 2 workers, the spawned process's start-up), run
    once; the two results must agree, which the run checks (a sharded grid is bit for bit the serial one).
    """
    seconds, per_run = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, 2):
            argv = [
                "--task", cfg.compare_task, "--methods", "zo_sgd,zo_adam", "--split", "test",
                "--instances", str(cfg.compare_instances), "--trials", "1",
                "--steps", str(cfg.compare_steps), "--threads", str(cfg.threads), "--workers", str(workers),
                "--wandb", "disabled", "--device", cfg.device,
                "--out", str(Path(folder) / f"w{workers}.json"),
            ]  # fmt: skip
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                result = compare.main(argv)
            seconds[workers] = time.perf_counter() - start
            per_run[workers] = [{k: v for k, v in r.items() if "wall" not in k} for r in result["per_run"]]
    return {
        "task": cfg.compare_task,
        "runs": len(per_run[1]),
        "steps": cfg.compare_steps,
        "serial_s": seconds[1],
        "workers2_s": seconds[2],
        "speedup": seconds[1] / seconds[2],
        "same_results": per_run[1] == per_run[2],
    }


def bench_many(cfg: BenchConfig) -> dict:
    """``l2l.run_many`` of tuned ZO-Adam on B mnist_attack val instances against ``l2l.run`` on each in turn.

    Rows per second are all runs' queries over the wall time (the recording forwards included in both);
    the ratio is the lockstep speed-up. The two must agree to ``run_many``'s float tolerance
    (``same_results``, :func:`l2l.run_many.agree`).
    """
    tasks = l2l.make_family("mnist_attack", device=cfg.device).instances("val", limit=cfg.many_instances)
    adam = l2l.make_optimizer("zo_adam", task="mnist_attack", q=cfg.q)
    seeds = list(range(len(tasks)))
    pairs = list(zip(tasks, seeds, strict=True))
    runs: dict[str, list[l2l.Trajectory]] = {}

    def one_at_a_time() -> None:
        runs["serial"] = [l2l.run(adam, task, cfg.many_steps, seed=seed) for task, seed in pairs]

    def lockstep() -> None:
        runs["many"] = l2l.run_many(adam, tasks, cfg.many_steps, seeds=seeds)

    serial_s, many_s = interleaved_medians([one_at_a_time, lockstep], cfg.repeats)
    rows = sum(traj.queries[-1] for traj in runs["serial"])
    return {
        "task": "mnist_attack",
        "instances": len(tasks),
        "steps": cfg.many_steps,
        "rows": rows,
        "serial_s": serial_s,
        "many_s": many_s,
        "serial_rows_per_s": rows / serial_s,
        "many_rows_per_s": rows / many_s,
        "speedup": serial_s / many_s,
        "same_results": all(agree(m, s) for m, s in zip(runs["many"], runs["serial"], strict=True)),
    }


def bench_batched_square(cfg: BenchConfig) -> dict:
    """A batched Square attack (``l2l.run_many``) on mnist_attack_linf test images at eps 0.2 against the
    bare batched forwards of the same rows, and against the same attacks one image at a time.

    The bare forwards replay what the batched run evaluated: one forward of every image (the starts'
    record), then one forward per step of as many images as were still running. Each run's queries
    equal the per-image runs' (``same_results``); timed once each, interleaved, after one untimed
    forward warm-up, since the runs last seconds to minutes.
    """
    family = l2l.make_family("mnist_attack_linf", device=cfg.device)
    tasks = family.instances("test", limit=cfg.square_instances)
    square = l2l.make_optimizer("square", task="mnist_attack_linf")
    seeds, budget = list(range(len(tasks))), cfg.square_budget
    images = torch.stack([task.image for task in tasks])
    runs: dict[str, list[l2l.Trajectory]] = {}

    def batched() -> None:
        runs["batched"] = l2l.run_many(
            square, tasks, budget, budget=budget, seeds=seeds, stop_at_success=True
        )

    def per_image() -> None:
        runs["per_image"] = [
            l2l.run(square, task, budget, budget=budget, seed=seed, stop_at_success=True)
            for task, seed in zip(tasks, seeds, strict=True)
        ]

    batched()  # what the bare forwards replay: how many images each step still ran
    running = [sum(len(t.queries) > k for t in runs["batched"]) for k in range(1, budget + 1)]
    running = [n for n in running if n]

    def bare() -> None:
        with torch.no_grad():
            family.model(images)
            for n in running:
                family.model(images[:n])

    bare()
    batched_s, bare_s, per_image_s = interleaved_medians([batched, bare, per_image], 1, warm_up=False)
    same = all(
        m.queries == s.queries and m.success_step == s.success_step
        for m, s in zip(runs["batched"], runs["per_image"], strict=True)
    )
    ratio = batched_s / bare_s
    return {
        "task": "mnist_attack_linf", "eps": tasks[0].eps, "instances": len(tasks), "budget": budget,
        "steps": len(running), "rows": sum(running) + len(tasks),
        "batched_s": batched_s, "bare_batched_forwards_s": bare_s, "per_image_s": per_image_s,
        "ratio": ratio, "per_image_over_batched": per_image_s / batched_s,
        "target_ratio": BATCHED_SQUARE_TARGET, "meets_target": ratio <= BATCHED_SQUARE_TARGET,
        "same_results": same,
    }  # fmt: skip


def bench_imagenet_table(cfg: BenchConfig) -> dict:
    """The ImageNet L-inf attack table's wall time (``eval.attack_table``, Square and SignHunter, eps
    0.05, ``imagenet_budget`` queries) on ``imagenet_images`` test images, one image at a time
    (``--vectorize 1``) and batched (``--vectorize 32``), each run once: a table lasts minutes.

    Their per-run queries agree (``same_results``). On a CPU thread a batch of EfficientNet forwards
    can cost more per image than single ones, so batching is not assumed to win here; a GPU is where it
    pays.
    """
    walls, tables = {}, {}
    for vectorize in (1, 32):
        config = AttackTableConfig(
            task="imagenet_attack_linf", methods="square,signhunter", budget=cfg.imagenet_budget,
            instances=cfg.imagenet_images, vectorize=vectorize, threads=cfg.threads, device=cfg.device,
            wandb="disabled",
        )  # fmt: skip
        start = time.perf_counter()
        tables[vectorize] = attack_table(config, progress=False)
        walls[vectorize] = time.perf_counter() - start
    queries = {v: [row["queries"] for row in t["per_run"]] for v, t in tables.items()}
    return {
        "task": "imagenet_attack_linf", "methods": ["square", "signhunter"],
        "instances": tables[1]["instances"], "budget": cfg.imagenet_budget,
        "per_image_s": walls[1], "batched_s": walls[32], "batched_over_per_image": walls[32] / walls[1],
        "same_results": queries[1] == queries[32],
    }  # fmt: skip


def print_table(report: dict, cfg: BenchConfig) -> None:
    """The report as a table on stdout."""
    a = report["attack_overhead"]
    rows = [
        ("attack run / bare forwards (ZO-Adam)", f"{a['ratio']:.3f}", f"<= {a['target_ratio']}"),
        ("  of which one-row records", f"{a['breakdown']['record']:.3f}", ""),
        ("  of which the rest", f"{a['breakdown']['rest']:.3f}", ""),
        ("attack run / bare forwards (Square)", f"{a['square_ratio']:.3f}", f"<= {a['target_ratio']}"),
        ("attack queries per second", f"{a['queries_per_s']:.0f}", ""),
        ("bare model queries per second", f"{a['bare_queries_per_s']:.0f}", ""),
    ]
    if "meta_training" in report:
        m = report["meta_training"]
        for k, stages in m["per_meta_batch"].items():
            rows += [
                (f"ZO-LSTM {stage} s / meta-it. / task", f"{seconds:.3f}", f"K = {k}")
                for stage, seconds in ((s.removesuffix("_s_per_task"), v) for s, v in stages.items())
            ]
        rows += [
            ("full default training s (serial)", f"{m['estimated_full_training_s']:.0f}",
             f"<= {m['target_s']}"),
            ("full default training s (2 ranks)", f"{m['estimated_full_training_2_ranks_s']:.0f}",
             f"<= {m['target_2_ranks_s']} (K = 2, one task per rank)"),
        ]  # fmt: skip
    if "workers" in report:
        w = report["workers"]
        same = "same" if w["same_results"] else "DIFFERENT"
        rows.append(("eval.compare --workers 2 speed-up", f"{w['speedup']:.2f}", f"{same} results"))
    if "many" in report:
        v = report["many"]
        same = "same" if v["same_results"] else "DIFFERENT"
        rows += [
            (f"run_many speed-up (B = {v['instances']})", f"{v['speedup']:.2f}",
             f"{same} results (rtol 1e-5)"),
            ("run_many rows per second", f"{v['many_rows_per_s']:.0f}",
             f"one at a time: {v['serial_rows_per_s']:.0f}"),
        ]  # fmt: skip
    if "batched_square" in report:
        b = report["batched_square"]
        same = "same" if b["same_results"] else "DIFFERENT"
        rows += [
            (f"batched Square / bare forwards (B={b['instances']})", f"{b['ratio']:.3f}",
             f"<= {b['target_ratio']}"),
            ("  one image at a time / batched", f"{b['per_image_over_batched']:.2f}",
             f"{same} queries; batched {b['batched_s']:.1f} s, per image {b['per_image_s']:.1f} s"),
        ]  # fmt: skip
    if "imagenet_table" in report:
        t = report["imagenet_table"]
        same = "same" if t["same_results"] else "DIFFERENT"
        rows.append((f"ImageNet table s ({t['instances']} images)", f"{t['per_image_s']:.1f}",
                     f"one at a time; batched {t['batched_s']:.1f} s, {same} queries"))  # fmt: skip
    print(f"{'benchmark':<38}{'value':>10}  {'target / note'}")
    for name, value, note in rows:
        print(f"{name:<38}{value:>10}  {note}")
    quick = ", quick" if cfg.quick else ""
    print(f"(threads={cfg.threads}, device={cfg.device}{quick}; report in {cfg.out})")


def main(argv: list[str] | None = None) -> dict:
    """``python -m eval.bench``: run the benchmarks, write the JSON report, print it; returns it."""
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
    if cfg.compare_instances > 0:
        report["workers"] = bench_workers(cfg)
    if cfg.many_instances > 0:
        report["many"] = bench_many(cfg)
    if cfg.square_instances > 0:
        report["batched_square"] = bench_batched_square(cfg)
    if cfg.imagenet_images > 0:
        report["imagenet_table"] = bench_imagenet_table(cfg)
    write_json_atomic(cfg.out, report)
    if cfg.stdout == "json":
        print(json.dumps(report, indent=2))
    else:
        print_table(report, cfg)
    return report


if __name__ == "__main__":
    run_cli(main)
