"""Compare meta-training runs by their validation curves against training seconds.

    python -m eval.val_curves --runs K=1=results/k1/history.json,K=4=results/k4/history.json \
        --at 10,20,40 --out results/val_curves.png

Each ``label=path`` of ``--runs`` (the label may hold ``=``; the path follows the last one) names a
``history.json`` that ``train.zo_lstm`` or ``train.learned`` wrote. Every validation record there
carries ``train_s``, the meta-step seconds spent so far (validation excluded), so runs of different
meta-batch sizes can be read at equal training time. The markdown table gives each run's best val
score reached within each ``--at`` budget, and the plot draws every run's val score against
``train_s``. Seconds are wall-clock: runs compared this way should share a machine and its load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval.report import line_style, new_axes, save_png
from l2l.common.cli import run_cli, user_input
from l2l.common.config import doc_field, parse_config, parse_float_list
from l2l.common.io import write_text_atomic


@dataclass
class ValCurvesConfig:
    """Compare meta-training runs by their validation curves against training seconds."""

    runs: str = doc_field(
        "", "comma-separated label=history.json pairs, one per run (train.zo_lstm / train.learned write it)"
    )
    at: str = doc_field("", "training seconds at which the table reads each run's best val score so far")
    out: str = doc_field("results/val_curves.png", "the PNG path; the markdown table goes beside it (.md)")


def read_runs(text: str) -> dict[str, list[dict]]:
    """``label -> validation records`` of each ``label=path`` spec (records without ``train_s`` refused)."""
    specs = [spec.strip() for spec in text.split(",") if spec.strip()]
    if not specs:
        raise ValueError("give at least one label=history.json run")
    runs = {}
    for spec in specs:
        label, sep, path = spec.rpartition("=")
        if not sep or not label or not path:
            raise ValueError(f"run {spec!r} must be label=path/to/history.json")
        if not Path(path).is_file():
            raise ValueError(f"run {label!r}: {path} is not a file (give the history.json of a training run)")
        records = json.loads(Path(path).read_text())
        if not records or any("train_s" not in r for r in records):
            raise ValueError(f"{path} has validation records without train_s (written before it); rerun it")
        runs[label] = records
    return runs


def score(record: dict) -> float:
    """A record's selection score: the several-family score, else the val final loss."""
    return record["score"] if "score" in record else record["final_loss_mean"]


def best_within(records: list[dict], seconds: float) -> float | None:
    """The best val score among the records validated within ``seconds`` of training (None: none)."""
    scores = [score(r) for r in records if r["train_s"] <= seconds]
    return min(scores) if scores else None


def markdown_table(runs: dict[str, list[dict]], at: list[float]) -> str:
    """One row per run: its best val score within each budget, its best overall and its training seconds."""
    head = " | ".join(f"best by {s:g} s" for s in at)
    lines = [f"| run | {head} | best | train s |", "|---" * (len(at) + 3) + "|"]
    for label, records in runs.items():
        cells = [best_within(records, s) for s in at]
        text = " | ".join("-" if c is None else f"{c:.4g}" for c in cells)
        best = min(score(r) for r in records)
        lines.append(f"| {label} | {text} | {best:.4g} | {records[-1]['train_s']:.0f} |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], path: Path) -> Path:
    """Every run's val score against its training seconds."""
    fig, ax = new_axes()
    for k, (label, records) in enumerate(runs.items()):
        ax.plot([r["train_s"] for r in records], [score(r) for r in records], label=label, **line_style(k))
    ax.set_xlabel("meta-training seconds (validation excluded)")
    ax.set_ylabel("val score (final loss)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(fig, path)


def main(argv: list[str] | None = None) -> str:
    """``python -m eval.val_curves``: print the table, write it and the plot; returns the table."""
    cfg = parse_config(ValCurvesConfig, argv)
    with user_input():  # a bad spec, a missing file or a bad --at list is the command line's error
        runs = read_runs(cfg.runs)
        at = parse_float_list(cfg.at, "at")
    out = Path(cfg.out)
    table = markdown_table(runs, at)
    write_text_atomic(out.with_suffix(".md"), table + "\n")
    plot(runs, out)
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return table


if __name__ == "__main__":
    run_cli(main)
