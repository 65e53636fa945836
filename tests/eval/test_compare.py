"""The head-to-head evaluation CLI: optimizer specs, the run grid, aggregation, outputs and wandb."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import matplotlib.image
import pytest

from eval import compare as compare_cli
from eval.headtohead import RunRecord, pad_curves, run_seed, summarize
from eval.report import OutputPaths
from eval.specs import build_optimizers, parse_optimizers
from eval.wandb_log import log_comparison
from l2l.optimizers.core.base import ZOOptimizer
from l2l.run import Trajectory
from tests.helpers import without_timings

STEPS, Q, INSTANCES, TRIALS = 15, 4, 2, 2
OPTIMIZERS = ("zo_sgd", "zo_signsgd", "zo_adam")
DESIGN_KEYS = {
    "final_loss_mean",
    "final_loss_std",
    "success_rate",
    "queries_to_success_mean",
    "queries_to_success_median",
    "queries_per_step",
    "total_queries",
    "loss_curve_mean",
    "queries_curve",
    "wall_s",
}


def _argv(json_path: Path, *extra: str) -> list[str]:
    return [
        "--task", "quadratic", "--methods", ",".join(OPTIMIZERS), "--instances", str(INSTANCES),
        "--trials", str(TRIALS), "--steps", str(STEPS), "--q", str(Q), "--mu", "1e-3",
        "--wandb", "disabled", "--out", str(json_path), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> OutputPaths:
    """One small end-to-end run of the CLI; its files are shared by the tests below."""
    json_path = tmp_path_factory.mktemp("compare") / "out.json"
    compare_cli.main(_argv(json_path))
    return OutputPaths.beside(json_path)


@pytest.fixture(scope="module")
def result(outputs: OutputPaths) -> dict:
    return json.loads(outputs.json.read_text())


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# --- optimizer specs ---


def test_specs_build_registered_optimizers_with_overrides():
    specs = parse_optimizers(" zo_sgd , zo_adam ", task="quadratic", q=7, mu=2e-3)
    assert [s.label for s in specs] == ["zo_sgd", "zo_adam"]
    built = build_optimizers(specs)
    assert [label for label, _ in built] == ["zo_sgd", "zo_adam"]
    assert all(opt.q == 7 and opt.mu == 2e-3 for _, opt in built)
    (_, default_mu), *_ = build_optimizers(parse_optimizers("zo_sgd", task="quadratic", q=3))
    assert default_mu.q == 3 and default_mu.mu == type(default_mu).mu  # mu=None keeps the default


def test_specs_label_path_loads_lazily_and_names_missing_file(tmp_path):
    missing = tmp_path / "nope.pt"
    spec, control = parse_optimizers(f"mine={missing}", task="quadratic", q=4)
    assert spec.label == "mine" and spec.source == str(missing)
    assert control.label == "mine_untrained" and control.source == f"{missing}#zo_lstm_untrained"
    for s in (spec, control):
        with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
            build_optimizers([s])


@pytest.mark.parametrize("text", ["zo_sgd,zo_sgd", "a=x.pt,a=y.pt", "zo_adam,zo_adam=x.pt"])
def test_specs_reject_duplicate_labels(text):
    with pytest.raises(ValueError, match="repeats the label"):
        parse_optimizers(text, task="quadratic", q=4)


@pytest.mark.parametrize("text", ["", "zo_sgd,,zo_adam", "zo_sgd,", " , "])
def test_specs_reject_empty_items(text):
    with pytest.raises(ValueError, match="empty item"):
        parse_optimizers(text, task="quadratic", q=4)


@pytest.mark.parametrize("text", ["=x.pt", "mine=", "mine= "])
def test_specs_reject_half_labeled_items(text):
    with pytest.raises(ValueError, match="label and a path"):
        parse_optimizers(text, task="quadratic", q=4)


def test_specs_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="zo_nope") as info:
        parse_optimizers("zo_sgd,zo_nope", task="quadratic", q=4)
    assert all(name in str(info.value) for name in OPTIMIZERS)


def test_specs_unlabeled_path_asks_for_a_label():
    with pytest.raises(ValueError, match=r"mine=checkpoints/x\.pt"):
        parse_optimizers("checkpoints/x.pt", task="quadratic", q=4)


# --- aggregation ---


def _record(losses, queries, success_query=None, has_success=True) -> RunRecord:
    success_step = None if success_query is None else queries.index(success_query)
    traj = Trajectory(losses, queries, success_step, success_query, wall_s=0.5)
    return RunRecord("opt", 0, 0, 0, traj, has_success)


class _FixedCost(ZOOptimizer):
    def step(self, state, oracle):
        return state

    def queries_per_step(self, dim: int) -> int:
        return 3


def test_pad_curves_repeats_the_last_value():
    assert pad_curves([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [4, 4, 4]]


def test_summarize_success_over_all_runs_and_queries_over_successful_ones():
    records = [
        _record([3.0, 2.0, 1.0], [0, 3, 6], success_query=6),
        _record([3.0, 2.5], [0, 3]),  # stopped early, never succeeded
        _record([3.0, 1.0, 0.0], [0, 3, 6], success_query=3),
    ]
    res = summarize(records, _FixedCost(), dim=5)
    assert res["success_rate"] == pytest.approx(2 / 3)
    assert res["queries_to_success_mean"] == 4.5 and res["queries_to_success_median"] == 4.5
    assert res["final_loss_mean"] == pytest.approx(3.5 / 3)
    assert res["loss_curve_mean"] == pytest.approx([3.0, 11 / 6, 3.5 / 3])  # padded with 2.5
    assert res["queries_curve"] == pytest.approx([0, 3, 5])
    assert res["total_queries"] == 15 and res["runs"] == 3 and res["wall_s"] == 1.5
    assert res["queries_per_step"] == 3


def test_summarize_without_success_notion_or_successes():
    undefined = summarize([_record([1.0, 0.5], [0, 3], has_success=False)], _FixedCost(), dim=5)
    assert undefined["success_rate"] is None and undefined["queries_to_success_mean"] is None
    failed = summarize([_record([1.0, 0.5], [0, 3])], _FixedCost(), dim=5)
    assert failed["success_rate"] == 0.0 and failed["queries_to_success_median"] is None


# --- the CLI end to end ---


@pytest.mark.slow
def test_json_has_design_shape(result):
    for key in ("task", "split", "instances", "trials", "steps", "q", "budget", "mu", "seed", "version"):
        assert key in result
    assert (result["task"], result["steps"], result["q"], result["budget"]) == ("quadratic", STEPS, Q, None)
    assert list(result["results"]) == list(OPTIMIZERS)
    runs = INSTANCES * TRIALS
    for res in result["results"].values():
        assert set(res) >= DESIGN_KEYS
        assert res["queries_per_step"] == Q + 1 == 5
        assert (
            len(res["loss_curve_mean"])
            == len(res["loss_curve_std"])
            == len(res["queries_curve"])
            == STEPS + 1
        )
        assert res["runs"] == runs and res["total_queries"] == runs * STEPS * 5
        assert res["success_rate"] is None  # quadratics define no success
        assert res["config"]["q"] == Q and res["config"]["mu"] == 1e-3


def test_summary_matches_the_per_run_records(result):
    for label, res in result["results"].items():
        finals = [r["final_loss"] for r in result["per_run"] if r["optimizer"] == label]
        assert res["final_loss_mean"] == pytest.approx(sum(finals) / len(finals))
        assert res["loss_curve_mean"][-1] == pytest.approx(res["final_loss_mean"])


def test_every_optimizer_gets_the_same_instances_seeds_and_start(result):
    seeds = {
        label: [(r["instance"], r["trial"], r["seed"]) for r in result["per_run"] if r["optimizer"] == label]
        for label in OPTIMIZERS
    }
    expected = [(i, t, run_seed(0, i, t)) for i in range(INSTANCES) for t in range(TRIALS)]
    assert all(s == expected for s in seeds.values())
    starts = {res["loss_curve_mean"][0] for res in result["results"].values()}
    assert len(starts) == 1


def test_csv_files_have_one_row_per_optimizer_and_per_run(outputs):
    summary = _read_csv(outputs.csv)
    assert [row["optimizer"] for row in summary] == list(OPTIMIZERS)
    runs = _read_csv(outputs.runs_csv)
    assert len(runs) == len(OPTIMIZERS) * INSTANCES * TRIALS
    assert {"seed", "final_loss", "queries", "success_step", "success_query", "wall_s"} <= set(runs[0])
    assert all(int(row["queries"]) == STEPS * 5 for row in runs)


def test_plots_and_markdown_are_written(outputs):
    for png in (outputs.loss_vs_iter, outputs.loss_vs_queries):
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 0 and image.shape[1] > 0
    md = outputs.md.read_text()
    assert all(f"| {name} |" in md for name in OPTIMIZERS)


@pytest.mark.slow
def test_same_seed_gives_identical_results(result, tmp_path):
    again = compare_cli.main(_argv(tmp_path / "again.json"))
    assert without_timings(json.loads(json.dumps(again))) == without_timings(result)


@pytest.mark.slow
def test_budget_stops_runs_before_exceeding_it(tmp_path):
    # each step costs q + 1 = 5 queries: 10 steps use 50, an 11th would need 55 > 52
    res = compare_cli.main(_argv(tmp_path / "budget.json", "--budget", "52"))
    assert res["budget"] == 52
    assert all(r["queries"] == 50 and r["steps"] == 10 for r in res["per_run"])
    for entry in res["results"].values():
        assert len(entry["loss_curve_mean"]) == 11 and max(entry["queries_curve"]) <= 52
        assert entry["total_queries"] == entry["runs"] * 50


@pytest.mark.slow
def test_budget_without_steps_lets_cheap_steps_spend_it_all(tmp_path):
    # equal-budget comparisons: zo_sgd pays q + 1 = 5 queries a step, fo_pgd 1, so with 1,000 queries
    # and no --steps, fo_pgd runs 1,000 steps (past the 200-step default) and zo_sgd 200
    from eval.compare import CompareConfig, compare

    config = CompareConfig(task="quadratic", methods="zo_sgd,fo_pgd", instances=1, trials=1, budget=1000,
                           q=4, wandb="disabled", out=str(tmp_path / "o.json"))  # fmt: skip
    res = compare(config, progress=False)
    steps = {r["optimizer"]: r["steps"] for r in res["per_run"]}
    assert steps == {"zo_sgd": 200, "fo_pgd": 1000} and res["steps"] == 1000
    assert all(r["queries"] == 1000 for r in res["per_run"])
    assert CompareConfig().step_limit() == 200 and CompareConfig(steps=7, budget=1000).step_limit() == 7


def test_help_lists_every_option_with_its_help(capsys):
    with pytest.raises(SystemExit) as info:
        compare_cli.main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for f in dataclasses.fields(compare_cli.CompareConfig):
        assert "--" + f.name.replace("_", "-") in text
        assert " ".join(f.metadata["help"].split()) in text


@pytest.mark.parametrize(
    "bad", [{"trials": 0}, {"trials": 1001}, {"instances": 0}, {"q": 0}, {"mu": 0.0}, {"budget": -1}]
)
def test_config_rejects_bad_values(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        compare_cli.CompareConfig(**bad)


def test_unknown_task_lists_registered_ones(tmp_path):
    with pytest.raises(KeyError, match="quadratic"):
        compare_cli.compare(compare_cli.CompareConfig(task="no_such_task", wandb="disabled"), progress=False)


def test_disabled_wandb_never_imports_it(outputs, result, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now raises ImportError
    assert log_comparison(result, outputs, mode="disabled", project="p", config={}) is None


@pytest.mark.slow
def test_offline_wandb_writes_a_local_run(tmp_path, monkeypatch):
    # slow-ish (a few seconds: wandb starts its service process); offline never touches the network
    monkeypatch.setenv("WANDB_SILENT", "true")
    compare_cli.main(_argv(tmp_path / "wb" / "out.json", "--wandb", "offline", "--steps", "3"))
    runs = list((tmp_path / "wb").glob("wandb/offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_white_box_references_are_marked_in_results_and_table(tmp_path):
    from eval import report
    from eval.compare import CompareConfig, compare

    config = CompareConfig(task="quadratic", methods="zo_sgd,fo_pgd", instances=1, trials=1, steps=3,
                           q=4, wandb="disabled", out=str(tmp_path / "o.json"))  # fmt: skip
    result = compare(config, progress=False)
    assert result["results"]["fo_pgd"]["white_box"] and not result["results"]["zo_sgd"]["white_box"]
    table = report.markdown_table(result)
    assert "| fo_pgd † |" in table and "| zo_sgd |" in table
