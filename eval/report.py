"""Write a comparison result (the dict of ``eval.compare.compare``) as JSON, CSV, markdown and PNG plots.

Everything here reads only the result dict, so a saved JSON can be re-reported without re-running.
Files are written atomically; plots use matplotlib's object API with the Agg canvas, so no GUI backend
or global pyplot state is touched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from l2l.common.io import atomic_write, write_json_atomic, write_text_atomic

#: columns of the summary CSV (and of the wandb summary table), one row per optimizer
SUMMARY_COLUMNS = (
    "optimizer",
    "final_loss_mean",
    "final_loss_std",
    "success_rate",
    "queries_to_success_median",
    "queries_to_success_mean",
    "queries_per_step",
    "total_queries",
    "runs",
    "wall_s",
)

#: columns of the per-run CSV
RUN_COLUMNS = (
    "optimizer",
    "instance",
    "trial",
    "seed",
    "final_loss",
    "steps",
    "queries",
    "success_step",
    "success_query",
    "wall_s",
)


@dataclass(frozen=True)
class OutputPaths:
    """Where one comparison's files go: the JSON path and siblings that share its stem.

    Attributes:
        json: the result JSON (``out.json``).
        csv: summary, one row per optimizer (``out.csv``).
        md: the markdown table (``out.md``).
        runs_csv: one row per run (``out_runs.csv``).
        loss_vs_iter: mean loss per iteration with a ±std band (``out_loss_vs_iter.png``).
        loss_vs_queries: mean loss against mean cumulative queries (``out_loss_vs_queries.png``).
    """

    json: Path
    csv: Path
    md: Path
    runs_csv: Path
    loss_vs_iter: Path
    loss_vs_queries: Path

    @classmethod
    def beside(cls, json_path: str | Path) -> OutputPaths:
        """The paths for a result written to ``json_path``; the others replace its suffix."""
        json_path = Path(json_path)
        stem = json_path.with_suffix("")
        return cls(
            json=json_path,
            csv=stem.with_name(stem.name + ".csv"),
            md=stem.with_name(stem.name + ".md"),
            runs_csv=stem.with_name(stem.name + "_runs.csv"),
            loss_vs_iter=stem.with_name(stem.name + "_loss_vs_iter.png"),
            loss_vs_queries=stem.with_name(stem.name + "_loss_vs_queries.png"),
        )


def summary_rows(result: dict) -> list[dict]:
    """One row per optimizer with the :data:`SUMMARY_COLUMNS`."""
    return [
        {"optimizer": label, **{c: res[c] for c in SUMMARY_COLUMNS[1:]}}
        for label, res in result["results"].items()
    ]


def _csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows as CSV text; None becomes an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def fmt_cell(value: float | None, spec: str = ".4g") -> str:
    """A table cell: ``n/a`` for None (undefined or never reached)."""
    return "n/a" if value is None else format(value, spec)


#: marks white-box first-order references (true gradients), which are not black-box methods
WHITE_BOX_MARK = "†"


def markdown_table(result: dict) -> str:
    """The summary as a markdown table, one row per optimizer; white-box references carry a †."""
    lines = [
        "| optimizer | final loss (mean ± std) | success rate | queries to success (median) "
        "| queries to success (mean) | queries/step | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, res in result["results"].items():
        rate = res["success_rate"]
        cells = [
            label + (f" {WHITE_BOX_MARK}" if res.get("white_box") else ""),
            f"{res['final_loss_mean']:.4g} ± {res['final_loss_std']:.3g}",
            fmt_cell(rate, ".1%"),
            fmt_cell(res["queries_to_success_median"], ".1f"),
            fmt_cell(res["queries_to_success_mean"], ".1f"),
            str(res["queries_per_step"]),
            f"{res['wall_s']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """A heading with the settings, the table, and how to read it."""
    budget = "none" if result["budget"] is None else f"{result['budget']} queries per run"
    mu = "tuned/default" if result["mu"] is None else result["mu"]
    return "\n".join(
        [
            f"## {plot_title(result)}",
            "",
            f"steps {result['steps']}, q {result['q']}, mu {mu}, budget {budget}, seed {result['seed']}, "
            f"l2l {result['version']}",
            "",
            markdown_table(result),
            "",
            "Queries count every oracle evaluation, base point included. Success rate is over all runs; "
            "queries to success are over successful runs only (n/a: none succeeded, or no success notion).",
            "",
        ]
    )


def plot_title(result: dict) -> str:
    """The first title line of a result's plots: task, split, instances and trials."""
    return (
        f"{result['task']} ({result['split']}): {result['instances']} instances x {result['trials']} trials"
    )


def new_axes() -> tuple[Figure, Any]:
    """A figure of the project's plot size on the Agg canvas (no pyplot state) and its one axes."""
    fig = Figure(figsize=(8.0, 4.4), layout="constrained")  # room for the legend beside the axes
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


#: dash patterns cycled beside tab10's colors: every one of the first 20 methods gets its own pair
LINE_STYLES = ("-", "--", "-.", ":")


def line_style(k: int, white_box: bool = False) -> dict[str, Any]:
    """Plot keywords of the ``k``-th method: a tab10 color and a dash pattern, a (color, pattern) pair no
    other of the first 20 methods shares; white-box references also carry x markers."""
    colors = colormaps["tab10"]
    style: dict[str, Any] = {"color": colors(k % colors.N), "linestyle": LINE_STYLES[k % len(LINE_STYLES)]}
    if white_box:
        style.update(marker="x", markevery=0.1, markersize=5)
    return style


def legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, where it covers no curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` atomically as a PNG (the project's dpi) and return the path."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def plot_curves(result: dict, x: Literal["iteration", "queries"], path: str | Path) -> Path:
    """Plot each optimizer's mean loss with a ±std band against iterations or mean cumulative queries.

    Runs that stopped early (budget, success) count with their last loss at later steps.
    """
    fig, ax = new_axes()
    for k, (label, res) in enumerate(result["results"].items()):
        mean, std = np.array(res["loss_curve_mean"]), np.array(res["loss_curve_std"])
        xs = np.arange(len(mean)) if x == "iteration" else np.array(res["queries_curve"])
        style = line_style(k, bool(res.get("white_box")))
        ax.plot(xs, mean, label=label, **style)
        ax.fill_between(xs, mean - std, mean + std, color=style["color"], alpha=0.2, linewidth=0)
    ax.set_xlabel("iteration" if x == "iteration" else "oracle queries (mean cumulative)")
    ax.set_ylabel("loss (mean ± std over runs)")
    title = plot_title(result)
    if result["budget"] is not None:
        # under a budget, optimizers with different per-step costs stop at different iterations
        title += (
            f"\nbudget {result['budget']} queries: the fair comparison"
            if x == "queries"
            else "\nunder a query budget: compare loss vs queries"
        )
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return save_png(fig, path)


def write_all(result: dict, paths: OutputPaths) -> OutputPaths:
    """Write the JSON, both CSVs, the markdown report and both plots; returns ``paths``."""
    write_json_atomic(paths.json, result)
    write_text_atomic(paths.csv, _csv_text(summary_rows(result), SUMMARY_COLUMNS))
    write_text_atomic(paths.runs_csv, _csv_text(result["per_run"], RUN_COLUMNS))
    write_text_atomic(paths.md, markdown_report(result))
    plot_curves(result, "iteration", paths.loss_vs_iter)
    plot_curves(result, "queries", paths.loss_vs_queries)
    return paths
