"""``python -m eval.val_curves``: the best val score within each training-seconds budget, and the plot."""

from __future__ import annotations

import json

import pytest

from eval import val_curves
from l2l.common.cli import run_cli


def _history(path, points):
    path.write_text(json.dumps([{"stage": "update", "train_s": s, "final_loss_mean": v} for s, v in points]))
    return path


def test_table_reads_each_runs_best_score_within_each_budget(tmp_path):
    a = _history(tmp_path / "a.json", [(0.0, 0.5), (5.0, 0.2), (12.0, 0.3)])
    b = _history(tmp_path / "b.json", [(0.0, 0.5), (8.0, 0.4), (20.0, 0.1)])
    out = tmp_path / "curves.png"
    table = val_curves.main(["--runs", f"K=1={a},K=4={b}", "--at", "4,10,30", "--out", str(out)])
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in table.splitlines()[2:]}
    assert rows["K=1"][:4] == ["0.5", "0.2", "0.2", "0.2"]  # by 4 s, 10 s, 30 s, and overall
    assert rows["K=4"][:4] == ["0.5", "0.4", "0.1", "0.1"]
    assert out.stat().st_size > 0 and out.with_suffix(".md").read_text() == table + "\n"


def test_bad_runs_are_one_line_errors(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps([{"stage": "update", "final_loss_mean": 0.3}]))
    cases = [(f"a={tmp_path / 'missing.json'}", "is not a file"), (f"a={old}", "without train_s"),
             ("nolabel", "must be label=path")]  # fmt: skip
    for runs, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(val_curves.main, ["--runs", runs, "--out", str(tmp_path / "x.png")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
