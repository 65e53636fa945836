"""Tune optimizers on the **val** split and record the winners in ``tuned.json``.

    python -m eval.tune --task mnist_attack --methods zo_sgd,zo_signsgd,zo_adam
    python -m eval.tune --task mnist_attack_linf --methods nes,spsa,zo_ngd --budget 2000

The protocol of papers/002 sec. 4 for the gradient-estimate methods: the learning rate is delta/d;
delta is tuned on the log grid {0.01, 0.1, 1, 10, 100, 1000}, then refined on a linear range around
the best value; ZO-Adam's betas are tuned over {0.9, 0.99} x {0.99, 0.996, 0.999}. The smoothing radius
mu matters as much as delta on float32 attacks, so it is tuned too (``--mu-grid``). Other methods search
the grids of their papers (:data:`SEARCH_SPACES`). The search is coordinatewise: each stage tries its
values at the best point so far. The score is the mean final loss over the val instances (under
``--budget`` queries when given); test instances are never touched.

``--eps`` builds the family at that radius (attack families) and records the winners under the key
:func:`l2l.tasks.registry.tuning_key` gives (``mnist_attack_linf@eps=0.3``; the family's name alone at
its default eps), which is the key ``eval.attack_table --eps 0.3`` reads.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, fields

import torch
from tqdm import tqdm

import l2l
from eval.distributed import WORKERS_DEFAULT, WORKERS_HELP, is_main, launch
from eval.headtohead import run_grid
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config, parse_float_list
from l2l.common.io import write_json_atomic
from l2l.common.options import GridOptions, ShardOptions, default_of
from l2l.estimators import check_mu, check_q
from l2l.optimizers import registry
from l2l.optimizers.registry import TUNED_FORMAT, accepted_params, load_tuned, optimizer_class
from l2l.tasks.base import Task
from l2l.tasks.registry import tuning_key

LOG_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
LINEAR_FACTORS = (0.25, 0.5, 0.75, 1.25, 1.5, 2.0, 3.0, 5.0)
BETA_PAIRS = tuple((b1, b2) for b1 in (0.9, 0.99) for b2 in (0.99, 0.996, 0.999))
#: tuning runs use seeds far from eval.compare's, so no comparison reuses a tuning run's randomness
TUNE_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Stage:
    """One coordinate of the search: try each of ``values`` for ``keys`` at the best point so far.

    Attributes:
        keys: the parameter names set together (e.g. ``("beta1", "beta2")``).
        values: one tuple per candidate, aligned with ``keys``; the string ``"mu_grid"`` stands for the
            command line's ``--mu-grid``.
        relative: the values are factors of the current value (a linear refinement).
    """

    keys: tuple[str, ...]
    values: tuple[tuple, ...] | str
    relative: bool = False


def grid(key: str, values, relative: bool = False) -> Stage:
    return Stage((key,), tuple((v,) for v in values), relative)


def refine(key: str) -> Stage:
    return grid(key, (1.0, *LINEAR_FACTORS), relative=True)


MU_STAGE = Stage(("mu",), "mu_grid")
BETAS_STAGE = Stage(("beta1", "beta2"), BETA_PAIRS)
EAD_BETA = grid("beta", (0.0, 1e-4, 1e-3, 1e-2))  # papers/001 Table 5 spans 1e-5 .. 1e-2
#: one candidate that changes nothing: a method with no hyperparameters (SignHunter) scores its defaults once
NO_TUNING = Stage((), ((),))
#: the grids of the papers (papers/001 for ZOO and EAD, papers/000 for NGD, papers/004 for NES/SPSA);
#: any other delta-based method gets :func:`default_space`
SEARCH_SPACES: dict[str, list[Stage]] = {
    "zoo_adam": [grid("lr", (1e-3, 2e-3, 1e-2, 3e-2, 0.1)), grid("h", (1e-4, 1e-3, 1e-2)), BETAS_STAGE,
                 refine("lr")],
    "zoo_newton": [grid("lr", (0.01, 0.1, 1.0, 10.0)), grid("h", (1e-4, 1e-3, 1e-2)),
                   grid("min_hessian", (0.1, 1.0)), refine("lr")],
    "zo_ngd": [grid("delta", (0.1, 1.0, 10.0, 100.0)), grid("gamma", (1e-3, 0.01, 0.1, 1.0)),
               grid("mu", (0.1, 0.5, 1.0)), refine("delta")],
    "fo_ngd": [grid("delta", (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)), grid("gamma", (0.01, 0.1, 1.0)),
               refine("delta")],
    "nes": [grid("delta", (6.15, 15.0, 25.0, 40.0)), grid("mu", (1e-3, 0.01, 0.03, 0.1)), refine("delta")],
    "spsa": [grid("delta", (6.15, 15.0, 25.0, 40.0)), grid("mu", tuple(k / 255 for k in (1, 2, 3, 5))),
             refine("delta")],
    "zo_ead": [grid("delta", LOG_GRID), EAD_BETA, MU_STAGE, refine("delta")],
    "fo_ead": [grid("delta", LOG_GRID), EAD_BETA, refine("delta")],
    # popsize: pycma's default 4 + floor(3 ln d) (17 at d = 100, 14 at d = 31), then about 2x and 4x it;
    # tune it under --budget: at equal --steps a larger population simply spends more queries
    "cma_es": [grid("sigma0", (0.01, 0.03, 0.1, 0.3, 1.0)), grid("popsize", (None, 32, 64))],
    # score-based attacks (docs/references.md): Square's p_init spans the
    # paper's 0.05 (ImageNet) to 0.8 (MNIST); Parsimonious's block side brackets the paper's ~1/9 image
    "square": [grid("p_init", (0.05, 0.1, 0.3, 0.5, 0.8))],
    "signhunter": [NO_TUNING],
    "parsimonious": [grid("block_size", (2, 4, 7, 14))],
    # Bandits-TD (Ilyas et al. 2019): grids around the published L-inf and L2 settings (image_lr 0.01 /
    # 0.5, online_lr 100 / 0.1, fd_eta 0.1 / 0.01, tile 6 px on 299 px); one grid serves both norms, and
    # no relative refinement follows, since the untuned fields are None (the norm's MNIST defaults)
    "bandits_td": [grid("image_lr", (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)),
                   grid("online_lr", (0.1, 1.0, 10.0, 100.0)), grid("fd_eta", (0.01, 0.03, 0.1, 0.3)),
                   grid("tile", (1, 2, 4, 7))],
    # the order attack's batch searches (papers/004 Tables 9-10, Fashion-MNIST, eps 4/255); Rand has none
    "rand": [NO_TUNING],
    "beta": [grid("lr", (0.0, 1.5, 3.0, 4.5, 6.0))],
    "pso": [grid("inertia", (0.8, 1.0, 1.1, 1.2, 1.4)), grid("phi_p", (0.37, 0.47, 0.57, 0.67, 0.77)),
            grid("phi_g", (0.24, 0.34, 0.44, 0.54, 0.64))],
    # SimBA (Guo et al. 2019): eps around the published 0.2, both bases
    "simba": [grid("step_size", (0.1, 0.2, 0.4, 0.8, 1.6)), grid("basis", ("dct", "pixel")),
              refine("step_size")],
    # ZO-Trend (our design): the mean's strength and the trend's memory, around eval.policy_bound's trend rows
    "zo_trend": [grid("delta", LOG_GRID), grid("strength", (0.25, 0.5, 1.0)),
                 grid("decay", (0.9, 0.97, 0.99, 0.995)), MU_STAGE, refine("delta")],
}  # fmt: skip


def default_space(name: str) -> list[Stage]:
    """delta on the log grid, Adam betas if it has them, mu if it has it, then a linear delta refinement."""
    names = {f.name for f in fields(optimizer_class(name))}
    if "delta" not in names:
        raise ValueError(f"no search space for {name!r}: add it to eval.tune.SEARCH_SPACES")
    stages = [grid("delta", LOG_GRID)]
    stages += [BETAS_STAGE] if "beta1" in names else []
    stages += [MU_STAGE] if "mu" in names else []
    return [*stages, refine("delta")]


def search_space(name: str) -> list[Stage]:
    return SEARCH_SPACES.get(name) or default_space(name)


@dataclass
class TuneConfig(ShardOptions):
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
    mu_grid: str = doc_field("1e-4,3e-4,1e-3,3e-3,1e-2", "mu values tried for delta-based methods")
    seed: int = default_of(
        GridOptions, "seed", 0, "base seed (tuning seeds never coincide with eval.compare's)"
    )
    workers: int = default_of(
        ShardOptions, "workers", WORKERS_DEFAULT,
        WORKERS_HELP + "; each candidate's runs are sharded, candidates run one by one",
    )  # fmt: skip
    write: bool = doc_field(True, "record the winners in l2l/optimizers/tuned.json")

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
    values = (
        [(m,) for m in parse_float_list(cfg.mu_grid, "mu_grid")]
        if stage.values == "mu_grid"
        else stage.values
    )
    out = []
    for row in values:
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


def record(task: str, results: dict[str, dict], cfg: TuneConfig) -> dict:
    """Merge ``results`` into the tuned-values file under key ``task`` (other keys and optimizers are kept).

    Args:
        task: the tuned.json key (``cfg.tuned_key()``: the family name, or ``name@eps=...``).
        results: each optimizer's :func:`tune_one` result.
        cfg: the tuning config, recorded with each result.
    """
    data = load_tuned()
    data = {"format": TUNED_FORMAT, "tasks": {k: dict(v) for k, v in data.get("tasks", {}).items()}}
    stamp = datetime.date.today().isoformat()
    # the worker count changes no result, so the record does not depend on it
    protocol = {k: v for k, v in asdict(cfg).items() if k != "workers"}
    for name, res in results.items():
        data["tasks"].setdefault(task, {})[name] = {
            **res,
            "tuned_on": {**protocol, "split": "val", "date": stamp, "version": l2l.__version__},
        }
    write_json_atomic(registry.TUNED_PATH, data)
    return data


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Parse ``argv``, tune each optimizer on val, print the winners and record them under the task key.

    With ``--workers N`` (or under torchrun) every candidate's runs are sharded over N processes, started
    once; every rank scores every candidate alike, so all follow the same search, and rank 0 writes
    (:mod:`eval.distributed`). Sharding each candidate's grid keeps the coordinatewise search as it is
    (a stage's candidates could run side by side, but the next stage needs their scores first).
    """
    cfg = parse_config(TuneConfig, argv)
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
        print(f"wrote {registry.TUNED_PATH} (key {key!r})")
    return results


if __name__ == "__main__":
    run_cli(main)
