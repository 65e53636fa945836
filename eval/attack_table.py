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

``--methods`` takes the optimizer list of :mod:`eval.specs` (as ``eval.compare``): registered names and
learned checkpoints (``zo_lstm=checkpoints/zo_lstm_mnist.pt``); every trained ZO-LSTM or ZO-RL policy
brings its untrained control ``<label>_untrained``, so the table shows what meta-training bought.
Registered methods keep their tuned q and mu (the table passes no overrides).

Tuned values per eps: the registered methods read the values tuned on val at the table's eps, under the
key :func:`l2l.tasks.registry.tuning_key` gives (``mnist_attack_linf`` at the default eps,
``mnist_attack_linf@eps=0.3`` otherwise; ``python -m eval.tune --eps 0.3`` writes it). A method that was
tuned at the default eps but not at this one is refused (no fallback: values tuned at another radius
would silently favor or handicap it), and so is ``label=ckpt.pt#no_update`` when ZO-SGD is (it reads
ZO-SGD's delta); the error names the ``eval.tune`` command that tunes them at this eps with the settings
of their default-eps tuning (or drop them). The JSON records the key each method's values came from
(``tuned_key``; None: class defaults or a checkpoint's own settings).

Beside the JSON and the markdown goes ``<stem>_success.png``: the fraction of runs that succeeded within
x queries (with checks) for x in 0 .. budget, one curve per method, white-box references dashed (the
curve data is in the JSON); the same figures go to wandb (offline by default).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.lines import Line2D

import l2l
from eval.headtohead import RunRecord, run_grid
from eval.output import Written, launch_and_write
from eval.report import (
    LINE_STYLES,
    WHITE_BOX_MARK,
    fmt_cell,
    legend_outside,
    line_style,
    new_axes,
    plot_title,
    save_png,
)
from eval.specs import OptimizerSpec, build_optimizers, parse_optimizers
from eval.wandb_log import log_attack_table
from l2l import attacks
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config
from l2l.common.io import write_json_atomic, write_text_atomic
from l2l.common.options import (
    GridOptions,
    LockstepOptions,
    OutputOptions,
    ShardOptions,
    default_of,
    pinned_threads,
)
from l2l.optimizers import is_tuned, load_tuned
from l2l.optimizers.core.base import ZOOptimizer
from l2l.run import Trajectory
from l2l.tasks.attack import AttackTask
from l2l.tasks.registry import family_models, family_zoo, paper_settings, tuning_key
from l2l.tasks.zoo.guard import heldout_targets_allowed
from l2l.tasks.zoo.registry import zoo_model

DEFAULT_METHODS = "zoo_adam,zoo_newton,zo_ngd,nes,spsa,zo_sgd,zo_signsgd,zo_adam,fo_pgd,fo_ngd,fo_ead"
#: the perturbation norms the table reports, as orders of torch.linalg.vector_norm
NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}
#: query counts (0 .. budget) at which the success curve is sampled, at most this many
CURVE_POINTS = 101
#: the per-method figures logged to wandb as the table and run summary
WANDB_COLUMNS = (
    "success_rate",
    "success_rate_with_checks",
    "queries_mean",
    "queries_median",
    "queries_with_checks_mean",
    "queries_with_checks_median",
    "l1_mean",
    "l2_mean",
    "linf_mean",
    "white_box",
    "tuned_key",
    "source",
)


@dataclass
class AttackTableConfig(LockstepOptions, ShardOptions, OutputOptions, GridOptions):
    """Success rate, queries and distortion of black-box attack methods under a query budget."""

    task: str = default_of(
        GridOptions, "task", "mnist_attack_linf", "attack task family (a classifier attack)"
    )
    methods: str = default_of(
        GridOptions,
        "methods",
        DEFAULT_METHODS,
        "comma-separated optimizers as in eval.compare: registered names (with the values tuned for "
        "--task at --eps, or their defaults) and label=checkpoint entries (each trained one adds its "
        "<label>_untrained control)",
    )
    instances: int = default_of(
        GridOptions, "instances", 100,
        "the most instances to attack, the first ones of the split; a smaller split (the ImageNet track's "
        "17 test images) runs whole, and the JSON records the count that ran",
    )  # fmt: skip
    budget: int = doc_field(2000, "the most oracle queries per run (a run stops before exceeding it)")
    eps: float | None = doc_field(
        None,
        "perturbation radius in the family's norm (none: its default, 0.2 for mnist_attack_linf); "
        "registered methods read the values tuned at this eps (eval.tune --eps)",
    )
    out: str = default_of(
        OutputOptions,
        "out",
        "results/attack_table/{task}{eps}{models}_{split}.json",
        "result JSON path ({task} and {split} are filled in, {eps} with '' at the family's default eps "
        "and _eps<value> otherwise, {models} with '' without --models and _<models> with it); the "
        "markdown table (.md) and <stem>_success.png go beside it",
    )
    models: str | None = doc_field(
        None,
        "target models of the family's zoo (l2l.tasks.zoo) to attack, one table each: heldout (the "
        "held-out targets, attacked at test time only), surrogates, or a comma list of zoo names (none: "
        "the family's default target, the shipped CNN). The JSON keeps each model's table under "
        "'models' and, per method, 'heldout_mean': success rate and mean / median queries with checks "
        "averaged over the held-out targets among them; methods keep the values tuned on the default "
        "(surrogate) target's val images",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("budget",))
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps={self.eps} must be > 0 (or none for the family's default)")
        self.model_names()  # refuse unknown models before anything runs

    def model_names(self) -> list[str] | None:
        """The zoo models ``models`` names, in zoo order for a role (None without ``models``).

        Raises:
            ValueError: a family without a zoo, an unknown or repeated name, or an empty item.
        """
        return None if self.models is None else family_models(self.task, self.models)[1]

    def tuned_key(self) -> str:
        """The ``tuned.json`` key of ``task`` at ``eps`` (raises ValueError if the family takes no eps)."""
        return tuning_key(self.task, **self.family_options())

    def family_options(self) -> dict[str, float]:
        """The options the task family is built with: ``eps`` when given."""
        return {} if self.eps is None else {"eps": self.eps}

    def out_path(self, **values: str) -> Path:
        """``out`` with its placeholders filled in; ``{eps}`` is ``""`` at the family's default eps."""
        at_default = self.tuned_key() == tuning_key(self.task)
        models = "" if self.models is None else "_" + self.models.replace(",", "+")
        return super().out_path(
            **{"eps": "" if at_default else f"_eps{self.eps:g}", "models": models, **values}
        )


def parse_methods(config: AttackTableConfig) -> list[OptimizerSpec]:
    """The specs of ``config.methods`` (:func:`eval.specs.parse_optimizers`), checked before anything runs.

    Registered methods read the values tuned at the table's eps and keep their tuned q and mu.

    Raises:
        ValueError: a malformed list (see :mod:`eval.specs`), a family without eps, or a method tuned at
            the default eps but not at this one (see :func:`check_tuned_at_eps`).
        KeyError: an unknown optimizer name.
    """
    key = config.tuned_key()
    specs = parse_optimizers(config.methods, config.task, q=None, tuned_key=key)
    check_tuned_at_eps(specs, config)
    return [with_paper_settings(spec, config) for spec in specs]


def with_paper_settings(spec: OptimizerSpec, config: AttackTableConfig) -> OptimizerSpec:
    """``spec`` built with its paper's settings for the family (:func:`l2l.tasks.registry.paper_settings`)
    where it is a registered method with no value tuned for the table's key: a test-only track (ImageNet)
    has no val split to tune on, so a method runs there as its paper ran it, not with MNIST defaults."""
    published = paper_settings(config.task).get(spec.source)
    if published is None or not is_registered(spec) or tuned_source(spec, config.tuned_key()) is not None:
        return spec
    return dataclasses.replace(spec, factory=lambda: l2l.make_optimizer(spec.source, **published))


def is_registered(spec: OptimizerSpec) -> bool:
    """Whether ``spec`` is a registered hand-designed method (not a checkpoint)."""
    return spec.source == spec.label and spec.source in l2l.optimizer_names()


def tuned_names(spec: OptimizerSpec) -> list[str]:
    """The registered methods whose tuned values ``spec`` reads: itself, or ZO-SGD for ``#no_update``."""
    if is_registered(spec):
        return [spec.label]
    return ["zo_sgd"] if spec.source.endswith("#zo_lstm_no_update") else []


def check_tuned_at_eps(specs: list[OptimizerSpec], config: AttackTableConfig) -> None:
    """Refuse methods whose values were tuned at the family's default eps but not at ``config.eps``."""
    key, default = config.tuned_key(), tuning_key(config.task)
    if key == default:
        return
    needed = list(dict.fromkeys(name for spec in specs for name in tuned_names(spec)))
    missing = [n for n in needed if is_tuned(n, default) and not is_tuned(n, key)]
    if missing:
        raise ValueError(
            f"method(s) {missing} have values tuned for {default!r} but none for {key!r}, and values tuned "
            f"at another eps are not used here; tune them on val at this eps first: "
            f"{retune_command(config, missing, default)} (or drop them from --methods)"
        )


#: the eval.tune settings a retuning at another eps copies from the default-eps record
RETUNE_SETTINGS = ("instances", "trials", "steps", "budget", "q", "mu", "mu_grid", "seed")


def retune_command(config: AttackTableConfig, names: list[str], default: str) -> str:
    """The ``eval.tune`` command that tunes ``names`` at ``config.eps`` as they were tuned at ``default``."""
    protocol = load_tuned()["tasks"].get(default, {}).get(names[0], {}).get("tuned_on", {})
    flags = [
        f"--{k.replace('_', '-')} {'none' if protocol[k] is None else protocol[k]}"
        for k in RETUNE_SETTINGS
        if k in protocol
    ]
    if "stop_at_success" in protocol:
        flags.append("--stop-at-success" if protocol["stop_at_success"] else "--no-stop-at-success")
    head = f"python -m eval.tune --task {config.task} --eps {config.eps:g} --methods {','.join(names)}"
    return " ".join([head, *flags])


def tuned_source(spec: OptimizerSpec, key: str) -> str | None:
    """The ``tuned.json`` key ``spec``'s values come from: ``key`` if it has some there, else None."""
    return key if any(is_tuned(name, key) for name in tuned_names(spec)) else None


def attack_tasks(config: AttackTableConfig, model: str | None = None) -> list[AttackTask]:
    """The instances to attack (on zoo ``model``, or the family's default target); refuses a family that
    takes no eps or whose tasks are not attacks."""
    config.tuned_key()  # a clear error when the family takes no eps
    options = config.family_options() | ({} if model is None else {"model": model})
    family = l2l.make_family(config.task, device=config.device, **options)
    tasks = family.instances(config.split, limit=min(config.instances, family.split_size(config.split)))
    if not tasks[0].classifier_attack:
        raise ValueError(
            f"task family {config.task!r} makes {type(tasks[0]).__name__} instances, which do not attack a "
            "classifier (classifier_attack is False); the attack table needs classifier attacks (an image, "
            "a label and a model), e.g. --task mnist_attack_linf"
        )
    return tasks


def queries_with_checks(traj: Trajectory, optimizer: ZOOptimizer) -> int | None:
    """``success_query`` plus the queries needed to observe success (module docstring,
    :func:`l2l.attacks.queries_with_checks`); None for a run that never succeeded."""
    return None if traj.success_step is None else attacks.queries_with_checks(traj, optimizer)


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


def query_grid(budget: int, points: int = CURVE_POINTS) -> list[int]:
    """Up to ``points`` evenly spaced integer query counts from 0 to ``budget``, both included, and as many
    log-spaced ones from 1 (the success plot's query axis is logarithmic: most attacks act early)."""
    linear = np.linspace(0, budget, min(points, budget + 1))
    logarithmic = np.geomspace(1, budget, points) if budget >= 1 else []
    return sorted({round(x) for x in (*linear, *logarithmic)})


def success_curve(rows: list[dict], grid: list[int]) -> list[float]:
    """The fraction of ``rows`` (runs) that observed success within each query count of ``grid``.

    Counts queries with checks (:func:`queries_with_checks`), so at ``grid[-1] == budget`` it equals
    ``success_rate_with_checks``; nondecreasing by construction.
    """
    checked = np.array(
        [r["success_query_with_checks"] for r in rows if r["success_query_with_checks"] is not None]
    )
    return [float(np.sum(checked <= x)) / len(rows) for x in grid]


def attack_table(config: AttackTableConfig, progress: bool = True) -> dict:
    """Run every method on the configured instances and return the result dict (nothing is written).

    With ``config.models``, one table per zoo model (held-out targets load here, test-time evaluation
    being the one place they may: :func:`l2l.tasks.zoo.guard.heldout_targets_allowed`), under
    ``models``, with the settings shared by all of them at the top and ``heldout_mean`` beside them.
    """
    names = config.model_names()
    if names is None:
        return model_table(config, None, progress)
    with heldout_targets_allowed():
        tables = {name: model_table(config, name, progress) for name in names}
    dataset = family_zoo(config.task)
    roles = {name: zoo_model(dataset, name).role for name in names}
    first = tables[names[0]]
    shared = (
        "task",
        "split",
        "trials",
        "budget",
        "seed",
        "eps",
        "tuned_key",
        "threads",
        "version",
        "sources",
    )
    return {
        **{key: first[key] for key in shared},
        "success_curve_queries": first["success_curve_queries"],
        "roles": roles,
        "heldout_mean": heldout_mean({n: t for n, t in tables.items() if roles[n] == "heldout"}),
        "models": tables,
    }


def heldout_mean(tables: dict[str, dict]) -> dict[str, dict]:
    """Per method, its figures averaged over the tables (one per held-out target model).

    ``success_rate`` averages the models' rates (each model weighs the same, whatever its image count);
    the query figures average the models' mean and median queries with checks over the models where the
    method succeeded at least once (``models_with_successes`` says how many: a mean over fewer models
    than ``models`` is not comparable across methods).

    Args:
        tables: model name -> that model's table (:func:`model_table`); empty gives {}.
    """
    if not tables:
        return {}
    methods = next(iter(tables.values()))["results"]
    summary = {}
    for method in methods:
        entries = [table["results"][method] for table in tables.values()]
        succeeded = [e for e in entries if e["successes"]]
        summary[method] = {
            "models": len(entries),
            "models_with_successes": len(succeeded),
            "white_box": entries[0]["white_box"],
            "success_rate": float(np.mean([e["success_rate"] for e in entries])),
            "queries_with_checks_mean": _mean([e["queries_with_checks_mean"] for e in succeeded]),
            "queries_with_checks_median": _mean([e["queries_with_checks_median"] for e in succeeded]),
        }
    return summary


def model_table(config: AttackTableConfig, model: str | None, progress: bool = True) -> dict:
    """The table of every method on one target model (``model`` of the zoo; None: the family default)."""
    with user_input():  # bad names and values are the command line's errors
        specs = parse_methods(config)  # fail fast, before the target model loads
        tasks = attack_tasks(config, model)
        optimizers = build_optimizers(specs)
    records = _run(config, optimizers, tasks, progress)
    by_name = dict(optimizers)
    rows = [run_row(r, tasks[r.instance], by_name[r.optimizer]) for r in records]
    grid = query_grid(config.budget)
    key = config.tuned_key()
    results = {}
    for spec in specs:
        mine = [r for r in rows if r["optimizer"] == spec.label]
        results[spec.label] = {
            **summarize_method(mine, by_name[spec.label], tasks[0].dim, config.budget),
            "source": spec.source,
            "tuned_key": tuned_source(spec, key),
            "paper_settings": paper_settings(config.task).get(spec.source) if is_registered(spec) else None,
            "success_curve_with_checks": success_curve(mine, grid),
        }
    settings = {k: getattr(config, k) for k in ("task", "split", "trials", "budget", "seed")}
    settings["instances"] = len(tasks)
    return {
        **settings,
        "model": model,
        "eps": tasks[0].eps,
        "tuned_key": key,
        "threads": config.threads,
        "version": l2l.__version__,
        "sources": {spec.label: spec.source for spec in specs},
        "success_curve_queries": grid,
        "results": results,
        "per_run": rows,
    }


def _run(
    config: AttackTableConfig,
    optimizers: list[tuple[str, ZOOptimizer]],
    tasks: list[AttackTask],
    progress: bool,
) -> list[RunRecord]:
    """Every (method, instance, trial) run, stopping at success or before exceeding the budget."""
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
            vectorize=config.vectorize,
        )
    return records


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
            sources_note(r),
            "",
        ]
    )


def sources_note(result: dict) -> str:
    """Where each method's settings came from: a tuned.json key, class defaults, or a checkpoint."""
    parts = []
    for label, res in result["results"].items():
        if res["tuned_key"] is not None:
            origin = f"tuned on val as {res['tuned_key']}"
        elif res.get("paper_settings"):
            origin = f"its paper's settings for this family ({res['paper_settings']})"
        elif res["source"] == label:
            origin = "class defaults (never tuned for this key)"
        else:
            origin = f"checkpoint {res['source']}"
        parts.append(f"{label}: {origin}")
    return "Settings: " + "; ".join(parts) + "."


def markdown_models_report(result: dict) -> str:
    """The table of a ``--models`` run: the held-out mean, then each model's table."""
    r = result
    heldout = [name for name, role in r["roles"].items() if role == "heldout"]
    lines = [
        f"## {r['task']} ({r['split']}) on {len(r['models'])} target models, {r['trials']} trials per image",
        "",
        f"budget {r['budget']} queries per run, eps {r['eps']}, seed {r['seed']}, l2l {r['version']}; "
        f"methods tuned as {r['tuned_key']} (the default target, a surrogate)",
        "",
    ]
    if heldout:
        lines += [
            f"### Mean over the held-out targets ({', '.join(heldout)})",
            "",
            "| method | success rate | with checks: mean | with checks: median | models with a success |",
            "|---|---|---|---|---|",
        ]
        for name, res in r["heldout_mean"].items():
            mark = f" {WHITE_BOX_MARK}" if res["white_box"] else ""
            cells = [
                name + mark,
                f"{res['success_rate']:.1%}",
                fmt_cell(res["queries_with_checks_mean"], ".1f"),
                fmt_cell(res["queries_with_checks_median"], ".1f"),
                f"{res['models_with_successes']}/{res['models']}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Each model weighs the same; query figures average the per-model figures below.", ""]
    for name, table in r["models"].items():
        lines += [
            f"### {name} ({r['roles'][name]}): {table['instances']} images",
            "",
            markdown_table(table),
            "",
        ]
    return "\n".join(lines)


def flat_models(result: dict) -> dict:
    """A ``--models`` result as one table whose methods are ``<method>@<model>`` (for wandb)."""
    flat = {
        f"{method}@{model}": res
        for model, t in result["models"].items()
        for method, res in t["results"].items()
    }
    return {**result, "results": flat}


def plot_models_success(result: dict, path: str | Path) -> Path:
    """Success rate (with checks) against queries on every model of a ``--models`` run, overlaid: one
    color per method, one line style per model, and a legend for each."""
    fig, ax = new_axes()
    grid = result["success_curve_queries"]
    methods = list(next(iter(result["models"].values()))["results"])
    # the line style tells the models apart, so the color alone must tell the methods apart
    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    colors = [palette(k % palette.N) for k in range(len(methods))]
    for j, table in enumerate(result["models"].values()):
        for k, method in enumerate(methods):
            style = {**line_style(k, table["results"][method]["white_box"]), "linestyle": LINE_STYLES[j % 4]}
            style["color"] = colors[k]
            ax.step(grid, table["results"][method]["success_curve_with_checks"], where="post", **style)
    method_handles = [Line2D([], [], color=colors[k], label=m) for k, m in enumerate(methods)]
    model_handles = [
        Line2D([], [], color="gray", linestyle=LINE_STYLES[j % 4], label=f"{m} ({result['roles'][m]})")
        for j, m in enumerate(result["models"])
    ]
    ax.add_artist(ax.legend(handles=method_handles, title="method", loc="upper left",
                            bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8))  # fmt: skip
    ax.legend(handles=model_handles, title="target model", loc="lower left", bbox_to_anchor=(1.02, 0.0),
              borderaxespad=0.0, fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(1, max(result["budget"], 2))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("queries (with success checks, log scale)")
    ax.set_ylabel("success rate (fraction of runs)")
    ax.set_title(f"{result['task']} ({result['split']}) per target model\neps {result['eps']}, budget "
                 f"{result['budget']}", fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def success_png_path(json_path: Path) -> Path:
    """``<stem>_success.png`` beside the result JSON."""
    return json_path.with_name(json_path.stem + "_success.png")


def plot_success(result: dict, path: str | Path) -> Path:
    """Success rate (with checks) against the query budget, one curve per method; white-box dashed."""
    fig, ax = new_axes()
    grid = result["success_curve_queries"]
    for k, (label, res) in enumerate(result["results"].items()):
        mark = f" {WHITE_BOX_MARK}" if res["white_box"] else ""
        ax.step(
            grid,
            res["success_curve_with_checks"],
            where="post",
            label=label + mark,
            **line_style(k, res["white_box"]),
        )
    ax.set_xscale("log")  # as the field draws it: most of the action is within the first 100 queries
    ax.set_xlim(1, max(result["budget"], 2))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("queries (with success checks, log scale)")
    ax.set_ylabel("success rate (fraction of runs)")
    ax.set_title(f"{plot_title(result)}\neps {result['eps']}, budget {result['budget']}", fontsize=10)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return save_png(fig, path)


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, build the table, print it, write the JSON, markdown and plot, and log to wandb.

    With ``--workers N`` (or under torchrun) the runs are sharded over N processes and rank 0 writes
    (:mod:`eval.distributed`); the result is the serial one, wall times aside.
    """
    return launch_and_write(attack_table, write_table, parse_config(AttackTableConfig, argv))


def write_table(result: dict, config: AttackTableConfig) -> Written:
    """Rank 0's part: the JSON, the markdown and the success plot at ``--out``, and the wandb log."""
    path = config.out_path()
    write_json_atomic(path, result)
    by_model = "models" in result
    text = markdown_models_report(result) if by_model else markdown_report(result)
    md = write_text_atomic(path.with_suffix(".md"), text)
    png = (plot_models_success if by_model else plot_success)(result, success_png_path(path))
    logged = flat_models(result) if by_model else result
    return Written(text, [path, md, png], functools.partial(_log, logged, png))


def _log(result: dict, png: Path, mode: str, project: str, config: dict) -> Path | None:
    return log_attack_table(result, png, mode=mode, project=project, config=config, columns=WANDB_COLUMNS)


if __name__ == "__main__":
    run_cli(main)
