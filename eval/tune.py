"""Tune the hand-designed baselines on the **val** split and record the winners in ``tuned.json``.

    python -m eval.tune --task mnist_attack --optimizers zo_sgd,zo_signsgd,zo_adam

The protocol of papers/002 sec. 4: the learning rate is delta/d; delta is tuned on the log grid
{0.01, 0.1, 1, 10, 100, 1000}, then refined on a linear range around the best value; ZO-Adam's betas
are tuned over {0.9, 0.99} x {0.99, 0.996, 0.999}. The smoothing radius mu matters as much as delta
on float32 attacks, so it is tuned too (``--mu-grid``). The score is the mean final loss over the val
instances; test instances are never touched.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

import l2l
from eval.headtohead import run_grid
from l2l.common.config import doc_field, parse_config
from l2l.common.io import write_json_atomic
from l2l.optimizers.registry import TUNED_FORMAT, TUNED_PATH, load_tuned, optimizer_class
from l2l.tasks.base import Task

LOG_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
LINEAR_FACTORS = (0.25, 0.5, 0.75, 1.25, 1.5, 2.0, 3.0, 5.0)
BETA1_GRID = (0.9, 0.99)
BETA2_GRID = (0.99, 0.996, 0.999)
#: tuning runs use seeds far from eval.compare's, so no comparison reuses a tuning run's randomness
TUNE_SEED_OFFSET = 1_000_003


@dataclass
class TuneConfig:
    """Tune baseline hyperparameters (delta, mu, Adam betas) on the val split of a task."""

    task: str = doc_field("mnist_attack", "task family name")
    optimizers: str = doc_field("zo_sgd,zo_signsgd,zo_adam", "comma-separated optimizer names to tune")
    instances: int = doc_field(10, "val instances per candidate")
    trials: int = doc_field(1, "seeds per instance")
    steps: int = doc_field(200, "optimizer steps per run")
    q: int = doc_field(20, "query directions per step")
    mu: float = doc_field(1e-4, "smoothing radius while delta and betas are tuned")
    mu_grid: str = doc_field("1e-4,3e-4,1e-3,3e-3,1e-2", "mu values tried at the best delta ('' skips)")
    seed: int = doc_field(0, "base seed (tuning seeds never coincide with eval.compare's)")
    threads: int = doc_field(1, "torch CPU threads (pin it: results depend on it bit for bit)")
    write: bool = doc_field(True, "record the winners in l2l/optimizers/tuned.json")


def score(name: str, params: dict, tasks: list[Task], cfg: TuneConfig) -> float:
    """Mean final loss of ``name`` with ``params`` over the tuning runs (inf if a run diverges to NaN)."""
    try:
        records = run_grid(
            [(name, l2l.make_optimizer(name, **params))],
            tasks,
            trials=cfg.trials,
            steps=cfg.steps,
            seed=cfg.seed + TUNE_SEED_OFFSET,
            progress=False,
        )
    except l2l.NonFiniteLoss:
        return math.inf
    finals = [r.trajectory.final_loss for r in records]
    return sum(finals) / len(finals) if all(math.isfinite(f) for f in finals) else math.inf


def best_of(name: str, candidates: list[dict], tasks: list[Task], cfg: TuneConfig, log: list, bar) -> dict:
    """Whichever parameter set in ``candidates`` scores lowest; every try is appended to ``log``."""
    best_params, best_score = candidates[0], math.inf
    for params in candidates:
        seen = [row["val_final_loss"] for row in log if row["params"] == params]
        s = seen[0] if seen else score(name, params, tasks, cfg)
        if not seen:
            log.append({"params": params, "val_final_loss": s})
        bar.update(1)
        bar.set_postfix_str(f"{name} {_short(params)} -> {s:.3f}")
        if s < best_score:
            best_params, best_score = params, s
    return best_params


def _short(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in params.items() if k != "q")


def candidates_for(name: str, cfg: TuneConfig) -> list[str]:
    """The tuning stages of ``name``, in order (for the progress-bar total)."""
    stages = ["delta"]
    if "beta1" in optimizer_class(name).__dataclass_fields__:
        stages.append("betas")
    if cfg.mu_grid.strip():
        stages.append("mu")
    return [*stages, "refine"]


def tune_one(name: str, tasks: list[Task], cfg: TuneConfig, bar) -> dict:
    """Coarse delta, then betas (Adam), then mu, then a linear delta refinement; returns the record."""
    log: list[dict] = []
    params = {"q": cfg.q, "mu": cfg.mu}
    for stage in candidates_for(name, cfg):
        if stage == "delta":
            grid = [{**params, "delta": d} for d in LOG_GRID]
        elif stage == "betas":
            grid = [{**params, "beta1": b1, "beta2": b2} for b1 in BETA1_GRID for b2 in BETA2_GRID]
        elif stage == "mu":
            grid = [{**params, "mu": float(m)} for m in cfg.mu_grid.split(",")]
        else:
            grid = [{**params, "delta": params["delta"] * f} for f in (1.0, *LINEAR_FACTORS)]
        params = best_of(name, grid, tasks, cfg, log, bar)
    best = min(log, key=lambda row: row["val_final_loss"])
    return {"params": best["params"], "val_final_loss": best["val_final_loss"], "grid": log}


def stage_sizes(name: str, cfg: TuneConfig) -> int:
    sizes = {
        "delta": len(LOG_GRID),
        "betas": len(BETA1_GRID) * len(BETA2_GRID),
        "mu": len(cfg.mu_grid.split(",")),
        "refine": 1 + len(LINEAR_FACTORS),
    }
    return sum(sizes[s] for s in candidates_for(name, cfg))


def record(task: str, results: dict[str, dict], cfg: TuneConfig) -> dict:
    """Merge ``results`` into the tuned-values file (other tasks and optimizers are kept)."""
    data = load_tuned()
    data = {"format": TUNED_FORMAT, "tasks": {k: dict(v) for k, v in data.get("tasks", {}).items()}}
    stamp = datetime.date.today().isoformat()
    for name, res in results.items():
        data["tasks"].setdefault(task, {})[name] = {
            **res,
            "tuned_on": {**asdict(cfg), "split": "val", "date": stamp, "version": l2l.__version__},
        }
    write_json_atomic(TUNED_PATH, data)
    return data


def main(argv: list[str] | None = None) -> dict[str, dict]:
    cfg = parse_config(TuneConfig, argv)
    torch.set_num_threads(cfg.threads)
    names = [n.strip() for n in cfg.optimizers.split(",") if n.strip()]
    for name in names:
        optimizer_class(name)  # fail fast on unknown names
    tasks = l2l.make_family(cfg.task).instances("val", limit=cfg.instances)
    bar = tqdm(total=sum(stage_sizes(n, cfg) for n in names), desc=f"tune {cfg.task} (val)", unit="cfg")
    results = {name: tune_one(name, tasks, cfg, bar) for name in names}
    bar.close()
    for name, res in results.items():
        print(f"{name:12s} val final loss {res['val_final_loss']:.4f}  {_short(res['params'])}")
    if cfg.write:
        record(cfg.task, results, cfg)
        print(f"wrote {TUNED_PATH}")
    return results


if __name__ == "__main__":
    main()
