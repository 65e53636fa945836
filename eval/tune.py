"""Tune optimizers on the **val** split and record the winners in ``tuned.json``.

    python -m eval.tune --task mnist_attack --methods zo_sgd,zo_signsgd,zo_adam
    python -m eval.tune --task mnist_attack_linf --methods nes,spsa,zo_ngd --budget 2000

The search spaces (papers/002's delta grid and linear refinement for the gradient-estimate methods, the
papers' grids for the others) are :data:`l2l.optimizers.core.search_spaces.SEARCH_SPACES`; the search is
coordinatewise: each stage tries its values at the best point so far. The score is the mean final loss
over the val instances (under ``--budget`` queries when given); test instances are never touched.

What it writes: the chosen values, their val score, the date, the split, the instance count and the
fingerprint of the search space go to ``l2l/optimizers/tuned.json`` (package data); every grid point
and its val score go to ``docs/results/tuning/grids.jsonl`` (results, one line per task key and method).

``--eps`` builds the family at that radius (attack families) and records the winners under the key
:func:`l2l.tasks.registry.tuning_key` gives (``mnist_attack_linf@eps=0.3``; the family's name alone at
its default eps), which is the key ``eval.attack_table --eps 0.3`` reads.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

import l2l
from eval.distributed import WORKERS_DEFAULT, WORKERS_HELP, is_main, launch
from eval.headtohead import run_grid
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config, parse_float_list
from l2l.common.io import write_json_atomic
from l2l.common.options import GridOptions, LockstepOptions, ShardOptions, default_of
from l2l.estimators import check_mu, check_q
from l2l.optimizers.core import tuned as tuned_file
from l2l.optimizers.core.registry import accepted_params, optimizer_class
from l2l.optimizers.core.search_spaces import (  # noqa: F401  (eval.tune's names from before the move)
    DEFAULT_MU_GRID,
    LINEAR_FACTORS,
    MU_STAGE,
    NO_TUNING,
    SEARCH_SPACES,
    Stage,
    grid,
    refine,
    search_space,
    space_fingerprint,
)
from l2l.tasks.base import Task
from l2l.tasks.registry import tuning_key
from l2l.tasks.zoo import surrogates_only

#: tuning runs use seeds far from eval.compare's, so no comparison reuses a tuning run's randomness
TUNE_SEED_OFFSET = 1_000_003
#: TuneConfig fields that change no tuning result, so tuned.json does not record them
UNRECORDED = ("workers", "write", "methods")
#: the grids searched and every candidate's val score, one JSON line per (task key, method): results kept
#: in the repository, not shipped as package data (tuned.json ships the chosen values alone)
GRIDS_PATH = Path(__file__).resolve().parents[1] / "docs" / "results" / "tuning" / "grids.jsonl"


@dataclass
class TuneConfig(LockstepOptions, ShardOptions):
    """Tune optimizer hyperparameters on the val split of a task and record them in tuned.json."""

    task: str = default_of(GridOptions, "task", "mnist_attack")
    eps: float | None = doc_field(
        None, "perturbation radius passed to the task family (none: its default); recorded as task@eps=..."
    )
    methods: str = default_of(
        GridOptions, "methods", "zo_sgd,zo_signsgd,zo_adam", "comma-separated registered optimizer names"
    )
    instances: int = default_of(GridOptions, "instances", 10, "val instances per candidate")
    trials: int = default_of(GridOptions, "trials", 1, "seeds per instance")
    steps: int = doc_field(200, "optimizer steps per run (an upper bound when --budget is set)")
    budget: int | None = doc_field(None, "query budget per run (none: --steps alone)")
    stop_at_success: bool = doc_field(False, "end runs at their first success (attacks under a budget)")
    q: int | None = doc_field(20, "query directions per step, for methods with q (none: each one's own)")
    mu: float | None = doc_field(None, "starting mu for methods with mu (none: each one's default)")
    mu_grid: str = doc_field(DEFAULT_MU_GRID, "mu values tried for delta-based methods")
    seed: int = default_of(
        GridOptions, "seed", 0, "base seed (tuning seeds never coincide with eval.compare's)"
    )
    workers: int = default_of(
        ShardOptions, "workers", WORKERS_DEFAULT,
        WORKERS_HELP + "; each candidate's runs are sharded, candidates run one by one",
    )  # fmt: skip
    write: bool = doc_field(
        True, "record the winners in l2l/optimizers/tuned.json, the grids in docs/results/tuning/grids.jsonl"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("instances", "trials", "steps"))
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget={self.budget} must be >= 1 (or none for --steps alone)")
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps={self.eps} must be > 0 (or none for the family's default)")
        if self.q is not None:
            check_q(self.q)
        if self.mu is not None:
            check_mu(self.mu)
        for mu in parse_float_list(self.mu_grid, "mu_grid"):
            check_mu(mu)

    def family_options(self) -> dict[str, float]:
        """The options the task family is built with: ``eps`` when given."""
        return {} if self.eps is None else {"eps": self.eps}

    def tuned_key(self) -> str:
        """The ``tuned.json`` key the winners go under (raises ValueError if the family takes no eps)."""
        return tuning_key(self.task, **self.family_options())


def parse_names(text: str) -> list[str]:
    """The registered optimizer names of ``text``, checked before anything runs.

    Raises:
        ValueError: an empty item, a repeated name, or a checkpoint (``label=path``: nothing to tune).
        KeyError: an unknown name (the message lists the registered ones).
    """
    names = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(names):
        raise ValueError(f"methods={text!r} has an empty item; write names separated by single commas")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"methods={text!r} repeats {repeated}; list each method once")
    for name in names:
        if "=" in name or "/" in name:
            raise ValueError(f"optimizer {name!r} is a checkpoint; eval.tune tunes registered names only")
        optimizer_class(name)
    return names


def score(name: str, params: dict, tasks: list[Task], cfg: TuneConfig) -> dict[str, float]:
    """Mean final loss and mean queries spent by ``name`` with ``params`` over the tuning runs.

    The loss of a run is its final one, or its lowest on tasks that report the best iterate seen
    (:attr:`l2l.tasks.base.Task.reports_best_seen`).

    Candidates rank by loss, then by queries: on attacks run with ``--stop-at-success`` many settings
    reach loss 0, and the one that gets there with fewer queries is better. A run that hits NaN scores inf.
    """
    try:
        records = run_grid(
            [(name, l2l.make_optimizer(name, **params))],
            tasks,
            trials=cfg.trials,
            steps=cfg.steps,
            budget=cfg.budget,
            seed=cfg.seed + TUNE_SEED_OFFSET,
            stop_at_success=cfg.stop_at_success,
            progress=False,
            vectorize=cfg.vectorize,
        )
    except l2l.NonFiniteLoss:
        return {"val_final_loss": math.inf, "val_queries": math.inf}
    # a task whose protocol reports the best iterate seen (the order attack) is scored by it
    finals = [min(r.trajectory.losses) if tasks[r.instance].reports_best_seen else r.trajectory.final_loss
              for r in records]  # fmt: skip
    loss = sum(finals) / len(finals) if all(math.isfinite(f) for f in finals) else math.inf
    return {
        "val_final_loss": loss,
        "val_queries": sum(r.trajectory.queries[-1] for r in records) / len(records),
    }


def rank(row: dict) -> tuple[float, float]:
    """Sort key of a scored candidate: lower loss first, then fewer queries."""
    return row["val_final_loss"], row["val_queries"]


def best_of(name: str, candidates: list[dict], tasks: list[Task], cfg: TuneConfig, log: list, bar) -> dict:
    """Whichever parameter set in ``candidates`` scores lowest; every new try is appended to ``log``."""
    best_params, best_rank = candidates[0], (math.inf, math.inf)
    for params in candidates:
        seen = [row for row in log if row["params"] == params]
        row = seen[0] if seen else {"params": params, **score(name, params, tasks, cfg)}
        if not seen:
            log.append(row)
        bar.update(1)
        bar.set_postfix_str(f"{name} {_short(params)} -> {row['val_final_loss']:.3f}")
        if rank(row) < best_rank:
            best_params, best_rank = params, rank(row)
    return best_params


def _short(params: dict) -> str:
    # non-numbers (a basis name, None for a method's own default) print as they are
    shown = {
        k: f"{v:.3g}" if isinstance(v, float | int) and not isinstance(v, bool) else str(v)
        for k, v in params.items()
    }
    return " ".join(f"{k}={v}" for k, v in shown.items() if k != "q")


def candidates(stage: Stage, params: dict, cfg: TuneConfig) -> list[dict]:
    """The parameter sets one stage tries around ``params``."""
    out = []
    for row in stage.rows(cfg.mu_grid):
        change = dict(zip(stage.keys, row, strict=True))
        if stage.relative:
            change = {k: params[k] * v for k, v in change.items()}
        out.append({**params, **change})
    return out


def start_params(name: str, cfg: TuneConfig) -> dict:
    """The shared settings every candidate of ``name`` starts from, plus class defaults of tuned keys."""
    shared = {k: v for k, v in {"q": cfg.q, "mu": cfg.mu}.items() if v is not None}
    defaults = {f.name: f.default for f in fields(optimizer_class(name))}
    keys = {k for stage in search_space(name) for k in stage.keys}
    return {**{k: defaults[k] for k in sorted(keys)}, **accepted_params(name, shared)}


def tune_one(name: str, tasks: list[Task], cfg: TuneConfig, bar) -> dict:
    """Search ``name``'s space stage by stage; returns the best parameters, their score and the log."""
    log: list[dict] = []
    params = start_params(name, cfg)
    for stage in search_space(name):
        params = best_of(name, candidates(stage, params, cfg), tasks, cfg, log, bar)
    best = min(log, key=rank)
    return {**best, "grid": log}


def stage_sizes(name: str, cfg: TuneConfig) -> int:
    """Candidates ``name`` will try (an upper bound: repeats are scored once), for the progress bar."""
    return sum(len(candidates(stage, start_params(name, cfg), cfg)) for stage in search_space(name))


def grids_path() -> Path:
    """Where the grids go: :data:`GRIDS_PATH` beside the shipped tuned.json, else beside the tuned file
    written (a test's or a scratch copy's), so a run never mixes its grids into another's results."""
    if tuned_file.TUNED_PATH == tuned_file.SHIPPED_TUNED_PATH:
        return GRIDS_PATH
    return tuned_file.TUNED_PATH.with_name("grids.jsonl")


def record(task: str, results: dict[str, dict], cfg: TuneConfig) -> dict:
    """Merge ``results`` into the tuned-values file under key ``task`` and their grids into the grids file.

    tuned.json gets the chosen values, their val score and the protocol (date, split, instances, the
    search space's fingerprint, ...); :func:`grids_path` gets each grid with the same protocol, one JSON
    line per (task key, method). Other keys and methods are kept in both.

    Args:
        task: the tuned.json key (``cfg.tuned_key()``: the family name, or ``name@eps=...``).
        results: each optimizer's :func:`tune_one` result.
        cfg: the tuning config, recorded with each result.
    """
    tasks = {k: dict(v) for k, v in tuned_file.load_tuned().get("tasks", {}).items()}
    data = {"format": tuned_file.TUNED_FORMAT, "tasks": tasks}
    stamp = datetime.date.today().isoformat()
    # the worker count, the write switch and the methods tuned alongside change no result: not recorded
    protocol = {k: v for k, v in asdict(cfg).items() if k not in UNRECORDED}
    protocol.update(split="val", date=stamp, version=l2l.__version__)
    grids = read_grids(grids_path())
    for name, res in results.items():
        tuned_on = {**protocol, "fingerprint": space_fingerprint(name, cfg.mu_grid)}
        chosen = {k: v for k, v in res.items() if k != "grid"}
        data["tasks"].setdefault(task, {})[name] = {**chosen, "tuned_on": tuned_on}
        grids[task, name] = {"task": task, "method": name, "tuned_on": tuned_on, "grid": res["grid"]}
    write_json_atomic(tuned_file.TUNED_PATH, data)
    write_grids(grids_path(), grids)
    return data


def read_grids(path: Path) -> dict[tuple[str, str], dict]:
    """The grids file's records by (task key, method); a missing file has none."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(row["task"], row["method"]): row for row in rows}


def write_grids(path: Path, grids: dict[tuple[str, str], dict]) -> None:
    """Write ``grids`` one compact JSON line per record, sorted by key, so a retuning changes one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(grids[key], separators=(",", ":")) for key in sorted(grids)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Parse ``argv``, tune each optimizer on val, print the winners and record them under the task key.

    With ``--workers N`` (or under torchrun) every candidate's runs are sharded over N processes, started
    once; every rank scores every candidate alike, so all follow the same search, and rank 0 writes
    (:mod:`eval.distributed`). Sharding each candidate's grid keeps the coordinatewise search as it is
    (a stage's candidates could run side by side, but the next stage needs their scores first).
    """
    cfg = parse_config(TuneConfig, argv)
    with surrogates_only():  # tuning never sees a held-out target model (spawned ranks inherit it)
        return launch(_tune_and_record, cfg, cfg.workers)


def _tune_and_record(cfg: TuneConfig) -> dict[str, dict]:
    """One rank's part of :func:`main`: every rank tunes, rank 0 alone records, prints and shows the bar."""
    torch.set_num_threads(cfg.threads)
    with user_input():  # bad names are the command line's errors
        names = parse_names(cfg.methods)  # fail fast on bad names, before the family loads
        key = cfg.tuned_key()
        for name in names:
            search_space(name)  # fail fast on a method without a search space
        family = l2l.make_family(cfg.task, device=cfg.device, **cfg.family_options())
        tasks = family.instances("val", limit=cfg.instances)
    total = sum(stage_sizes(n, cfg) for n in names)
    bar = tqdm(total=total, desc=f"tune {key} (val)", unit="cfg", disable=not is_main())
    results = {}
    for name in names:
        results[name] = tune_one(name, tasks, cfg, bar)
        if cfg.write and is_main():  # after each method, so an interrupted run keeps what it finished
            record(key, {name: results[name]}, cfg)
    bar.close()
    for name, res in results.items():
        print(f"{name:12s} val final loss {res['val_final_loss']:.4f}  {_short(res['params'])}")
    if cfg.write and is_main():
        print(f"wrote {tuned_file.TUNED_PATH} and {grids_path()} (key {key!r})")
    return results


if __name__ == "__main__":
    run_cli(main)
