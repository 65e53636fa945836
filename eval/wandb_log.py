"""Log a comparison or an attack table to wandb: curves, the summary table and the PNG plots.

``offline`` (the default of ``eval.compare``) writes a local run folder under ``<output folder>/wandb``
and never touches the network (upload it later with ``wandb sync <folder>``); ``online`` uploads;
``disabled`` does nothing and does not even import wandb.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eval.report import SUMMARY_COLUMNS, OutputPaths, summary_rows

WANDB_MODES = ("online", "offline", "disabled")


def log_comparison(
    result: dict, paths: OutputPaths, mode: str, project: str, config: dict[str, Any]
) -> Path | None:
    """Log ``result`` as one wandb run (``job_type="compare"``) and return its local folder.

    Args:
        result: the dict of ``eval.compare.compare``.
        paths: where the result's files were written; the run folder goes beside them and the PNGs
            are logged as images, so :func:`eval.report.write_all` must have run first.
        mode: ``online``, ``offline`` or ``disabled`` (returns None at once).
        project: the wandb project.
        config: the run config to record (the comparison's settings).
    """
    started = start_run(mode, project, paths.json.parent, config, job_type="compare")
    if started is None:
        return None
    wandb, run = started
    try:
        _log_curves(run, result)
        _log_line_series(wandb, run, result)
        rows = summary_rows(result)
        table = wandb.Table(
            columns=list(SUMMARY_COLUMNS), data=[[r[c] for c in SUMMARY_COLUMNS] for r in rows]
        )
        images = {
            name: wandb.Image(str(getattr(paths, name))) for name in ("loss_vs_iter", "loss_vs_queries")
        }
        run.log({"summary": table, **images})
        for row in rows:
            for column in SUMMARY_COLUMNS[1:]:
                run.summary[f"{row['optimizer']}/{column}"] = row[column]
        return Path(run.dir).parent
    finally:
        run.finish()


def start_run(mode: str, project: str, folder: Path, config: dict[str, Any], job_type: str) -> tuple | None:
    """``(wandb, run)`` for a new run whose folder goes under ``folder``; None when ``mode`` is disabled.

    Args:
        mode: ``online``, ``offline`` or ``disabled`` (wandb is then not even imported).
        project: the wandb project.
        folder: where the ``wandb`` run folder is created (beside the result files).
        config: the run config to record.
        job_type: what kind of run it is (``compare``, ``attack_table``).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"wandb mode {mode!r} is not one of {', '.join(WANDB_MODES)}")
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")  # keep wandb's banner out of the printed table
    import wandb  # imported here: it is slow to import and unused when disabled

    run = wandb.init(project=project, mode=mode, dir=str(folder), config=config, job_type=job_type)
    return wandb, run


def log_attack_table(
    result: dict, png: Path, mode: str, project: str, config: dict[str, Any], columns: tuple[str, ...]
) -> Path | None:
    """Log an attack table (``eval.attack_table``) as one run (``job_type="attack_table"``).

    Logs the success-rate-vs-queries curves as one chart, the table (one row per method with
    ``columns`` of its result), the PNG at ``png``, and each method's ``columns`` as run summary values
    ``<method>/<column>``. The run folder goes beside the PNG.

    Args:
        result: the dict of ``eval.attack_table.attack_table``.
        png: the success-vs-queries plot, already written.
        mode: ``online``, ``offline`` or ``disabled`` (returns None at once).
        project: the wandb project.
        config: the run config to record (the table's settings).
        columns: the per-method result keys to tabulate.
    """
    started = start_run(mode, project, png.parent, config, job_type="attack_table")
    if started is None:
        return None
    wandb, run = started
    try:
        methods = result["results"]
        grid = result["success_curve_queries"]
        chart = wandb.plot.line_series(
            xs=[grid] * len(methods),
            ys=[res["success_curve_with_checks"] for res in methods.values()],
            keys=list(methods),
            title="success rate vs queries (with checks)",
            xname="queries",
        )
        rows = [[label, *(res[c] for c in columns)] for label, res in methods.items()]
        table = wandb.Table(columns=["method", *columns], data=rows)
        run.log(
            {"success_vs_queries_chart": chart, "table": table, "success_vs_queries": wandb.Image(str(png))}
        )
        for label, res in methods.items():
            for column in columns:
                run.summary[f"{label}/{column}"] = res[column]
        return Path(run.dir).parent
    finally:
        run.finish()


def _log_curves(run: Any, result: dict) -> None:
    """One chart per optimizer: ``loss/<label>`` and ``queries/<label>`` against the iteration."""
    run.define_metric("iteration")
    run.define_metric("loss/*", step_metric="iteration")
    run.define_metric("queries/*", step_metric="iteration")
    curves = result["results"]
    longest = max(len(res["loss_curve_mean"]) for res in curves.values())
    for k in range(longest):
        row: dict[str, float] = {"iteration": k}
        for label, res in curves.items():
            if k < len(res["loss_curve_mean"]):
                row[f"loss/{label}"] = res["loss_curve_mean"][k]
                row[f"queries/{label}"] = res["queries_curve"][k]
        run.log(row)


def _log_line_series(wandb: Any, run: Any, result: dict) -> None:
    """All optimizers on one chart each: mean loss vs iteration and vs mean cumulative queries."""
    labels = list(result["results"])
    losses = [res["loss_curve_mean"] for res in result["results"].values()]
    charts = {
        "loss_vs_iter_chart": ([list(range(len(curve))) for curve in losses], "iteration"),
        "loss_vs_queries_chart": ([res["queries_curve"] for res in result["results"].values()], "queries"),
    }
    run.log(
        {
            key: wandb.plot.line_series(
                xs=xs, ys=losses, keys=labels, title=f"mean loss vs {xname}", xname=xname
            )
            for key, (xs, xname) in charts.items()
        }
    )
