"""eval.attack_table: learned checkpoints, the success-vs-queries curve, trials, per-eps tuned keys."""

from __future__ import annotations

import itertools
import json
import sys

import pytest
import torch
from matplotlib.image import imread

from eval import attack_table, tune
from eval.headtohead import run_seed
from eval.specs import parse_optimizers
from eval.wandb_log import log_attack_table
from l2l.common.config import parse_config
from l2l.learned import ZOLSTM, save_zo_lstm
from l2l.optimizers.core import tuned as registry
from l2l.optimizers.core.tuned import TUNED_FORMAT
from l2l.run import Trajectory
from l2l.tasks.registry import tuning_key
from l2l.tasks.zoo.guard import HeldOutTargetError, surrogates_only

TASK = "mnist_attack_linf"
KEY_03 = "mnist_attack_linf@eps=0.3"
#: known values under both keys, so no test depends on the committed tuned.json
NES_DEFAULT = {"delta": 15.0, "mu": 0.01, "q": 10}
NES_AT_03 = {"delta": 25.0, "mu": 0.03, "q": 10}
#: a step this long lands on the ball's corner along -sign(grad), which fools the model on these images
FO_PGD = {"delta": 1000.0}


def _write_tuned(path, tasks: dict) -> None:
    entries = {
        key: {name: {"params": params} for name, params in methods.items()} for key, methods in tasks.items()
    }
    path.write_text(json.dumps({"format": TUNED_FORMAT, "tasks": entries}))


@pytest.fixture
def tuned_path(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    monkeypatch.setattr(registry, "TUNED_PATH", path)
    _write_tuned(path, {TASK: {"nes": NES_DEFAULT}})
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """One small table: a registered method, a learned checkpoint (with its control), a white-box one."""
    folder = tmp_path_factory.mktemp("table")
    tuned = folder / "tuned.json"
    _write_tuned(tuned, {TASK: {"nes": NES_DEFAULT, "fo_pgd": FO_PGD}})
    ckpt = save_zo_lstm(folder / "mine.pt", ZOLSTM(q=4, mu=1e-3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "TUNED_PATH", tuned)
        sizes = ["--split", "val", "--instances", "2", "--trials", "2", "--budget", "60"]
        outputs = ["--wandb", "disabled", "--out", str(folder / "t.json")]
        result = attack_table.main([*sizes, "--methods", f"nes,mine={ckpt},fo_pgd", *outputs])
    return folder, ckpt, result


@pytest.mark.slow
def test_a_learned_checkpoint_row_appears_with_its_untrained_control(table):
    folder, ckpt, _ = table
    saved = json.loads((folder / "t.json").read_text())
    assert list(saved["results"]) == ["nes", "mine", "mine_untrained", "fo_pgd"]
    res = saved["results"]
    assert (
        res["mine"]["source"] == str(ckpt) and res["mine_untrained"]["source"] == f"{ckpt}#zo_lstm_untrained"
    )
    assert saved["sources"] == {label: r["source"] for label, r in res.items()}
    assert res["mine"]["tuned_key"] is None and res["mine_untrained"]["tuned_key"] is None
    assert res["nes"]["tuned_key"] == TASK and res["nes"]["config"]["delta"] == NES_DEFAULT["delta"]
    assert res["fo_pgd"]["tuned_key"] == TASK and res["fo_pgd"]["white_box"]
    assert saved["tuned_key"] == TASK and saved["eps"] == 0.2
    md = (folder / "t.md").read_text()
    assert "| mine_untrained |" in md and f"mine: checkpoint {ckpt}" in md


def test_success_curve_is_monotone_and_ends_at_the_success_rate_with_checks(table):
    folder, _, result = table
    grid = result["success_curve_queries"]
    assert grid[0] == 0 and grid[-1] == 60 and grid == sorted(set(grid))
    for label, res in result["results"].items():
        curve = res["success_curve_with_checks"]
        assert len(curve) == len(grid) and all(0.0 <= c <= 1.0 for c in curve), label
        assert all(a <= b for a, b in itertools.pairwise(curve)), label
        assert curve[-1] == pytest.approx(res["success_rate_with_checks"]), label
    assert result["results"]["fo_pgd"]["success_curve_with_checks"][-1] == 1.0  # white-box: 1 step + 1 check
    image = imread(folder / "t_success.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_success_curve_counts_runs_with_checks_at_each_query_count():
    rows = [{"success_query_with_checks": q} for q in (None, 5, 10, 20)]
    assert attack_table.success_curve(rows, [0, 4, 5, 10, 19, 20]) == [0.0, 0.0, 0.25, 0.5, 0.5, 0.75]
    grid = attack_table.query_grid(2000)
    assert set(range(0, 2001, 20)) <= set(grid) and grid == sorted(set(grid))  # the even grid, and
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 10} <= set(grid)  # the log-spaced points the plot's axis needs
    assert grid[0] == 0 and grid[-1] == 2000 and len(grid) <= 2 * attack_table.CURVE_POINTS
    assert attack_table.query_grid(5) == [0, 1, 2, 3, 4, 5]


def test_every_method_gets_its_own_color_and_dash_pattern():
    from eval.report import line_style

    pairs = {(line_style(k)["color"], line_style(k)["linestyle"]) for k in range(20)}
    assert len(pairs) == 20 and "marker" in line_style(3, white_box=True)


def test_trials_run_with_the_documented_seeds(table):
    _, _, result = table
    nes = [r for r in result["per_run"] if r["optimizer"] == "nes"]
    assert sorted((r["instance"], r["trial"]) for r in nes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for row in result["per_run"]:
        assert (
            row["seed"] == run_seed(0, row["instance"], row["trial"]) == 1000 * row["instance"] + row["trial"]
        )
    assert all(res["runs"] == 4 for res in result["results"].values())
    # different seeds draw different NES directions: the two trials of one image do not coincide
    first = {r["trial"]: r["final_loss"] for r in nes if r["instance"] == 0}
    assert first[0] != first[1]


def test_tuning_key_leaves_out_defaults_and_writes_numbers_as_floats():
    assert tuning_key(TASK) == tuning_key(TASK, eps=None) == tuning_key(TASK, eps=0.2) == TASK
    assert tuning_key(TASK, eps=0.3) == KEY_03
    assert (
        tuning_key("mnist_attack_l2", eps=2) == "mnist_attack_l2"
        and tuning_key("quadratic", dim=10) == "quadratic"
    )
    assert (
        tuning_key("mnist_attack_l2", eps=3)
        == tuning_key("mnist_attack_l2", eps=3.0)
        == "mnist_attack_l2@eps=3.0"
    )
    with pytest.raises(ValueError, match=r"'quadratic' takes no option\(s\) \['eps'\]"):
        tuning_key("quadratic", eps=0.3)
    with pytest.raises(KeyError, match="unknown task 'no_such_family'"):
        tuning_key("no_such_family")


@pytest.mark.slow
def test_tune_at_eps_round_trips_into_the_attack_table(tuned_path, tmp_path, monkeypatch):
    monkeypatch.setitem(tune.SEARCH_SPACES, "nes", [tune.grid("delta", (0.5, 40.0))])  # 2 candidates
    args = [
        "--task",
        TASK,
        "--eps",
        "0.3",
        "--methods",
        "nes",
        "--instances",
        "1",
        "--steps",
        "3",
        "--q",
        "3",
    ]
    tune.main(args)
    data = json.loads(tuned_path.read_text())
    entry = data["tasks"][KEY_03]["nes"]
    assert entry["tuned_on"]["eps"] == 0.3 and entry["tuned_on"]["split"] == "val"
    assert data["tasks"][TASK]["nes"]["params"] == NES_DEFAULT  # the default-eps values are kept apart
    config = attack_table.AttackTableConfig(
        methods="nes",
        eps=0.3,
        split="val",
        instances=1,
        budget=10,
        out=str(tmp_path / "{task}{eps}_{split}.json"),
    )
    assert config.out_path().name == "mnist_attack_linf_eps0.3_val.json"
    result = attack_table.attack_table(config, progress=False)
    assert result["tuned_key"] == KEY_03 and result["eps"] == 0.3
    nes = result["results"]["nes"]
    assert nes["tuned_key"] == KEY_03 and nes["config"]["delta"] == entry["params"]["delta"]
    assert nes["config"]["q"] == 3 and all(
        r["linf"] is None or r["linf"] <= 0.3 + 1e-6 for r in result["per_run"]
    )


def test_a_method_tuned_only_at_the_default_eps_is_refused_at_another(tuned_path):
    protocol = {"instances": 5, "steps": 100000, "budget": 2000, "stop_at_success": True, "q": None}
    entries = {"nes": {"params": NES_DEFAULT, "tuned_on": protocol}, "zo_sgd": {"params": {"delta": 2.0}}}
    tuned_path.write_text(json.dumps({"format": TUNED_FORMAT, "tasks": {TASK: entries}}))
    config = attack_table.AttackTableConfig(methods="nes,fo_pgd", eps=0.3)
    with pytest.raises(
        ValueError, match=r"\['nes'\] have values tuned for 'mnist_attack_linf' but none for"
    ) as err:
        attack_table.attack_table(config, progress=False)
    command = str(err.value).split(" first: ")[1].split(" (or drop")[0]
    assert command.startswith("python -m eval.tune --task mnist_attack_linf --eps 0.3 --methods nes ")
    retune = parse_config(tune.TuneConfig, command.split()[3:])  # the printed command is one eval.tune takes
    assert (retune.eps, retune.instances, retune.steps, retune.budget, retune.q) == (
        0.3,
        5,
        100000,
        2000,
        None,
    )
    assert retune.stop_at_success and retune.tuned_key() == KEY_03
    # a ZO-LSTM without its update network reads ZO-SGD's delta, so it needs ZO-SGD tuned at this eps too
    ablation = attack_table.AttackTableConfig(methods="abl=x.pt#no_update", eps=0.3)
    with pytest.raises(ValueError, match=r"\['zo_sgd'\] have values tuned"):
        attack_table.parse_methods(ablation)
    _write_tuned(tuned_path, {TASK: {"nes": NES_DEFAULT}, KEY_03: {"nes": NES_AT_03}})
    specs = attack_table.parse_methods(config)  # tuned at 0.3 now: accepted, and reads those values
    assert specs[0].factory().delta == NES_AT_03["delta"]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"methods": "nes,no_such_method"}, KeyError, "unknown optimizer 'no_such_method'"),
        ({"methods": "nes,,spsa"}, ValueError, "has an empty item"),
        ({"methods": "mine="}, ValueError, "needs both a label and a path"),
        ({"methods": "checkpoints/x.pt"}, ValueError, "label it, as in mine=checkpoints/x.pt"),
        ({"methods": "nes,nes"}, ValueError, r"repeats the label\(s\) \['nes'\]"),
        ({"task": "quadratic", "eps": 0.3}, ValueError, r"takes no option\(s\) \['eps'\]"),
    ],
)
def test_attack_table_rejects_bad_methods_and_options(changes, error, match, tuned_path):
    with pytest.raises(error, match=match):
        attack_table.attack_table(attack_table.AttackTableConfig(**changes), progress=False)


def test_attack_table_refuses_a_family_that_is_no_classifier_attack():
    config = attack_table.AttackTableConfig(task="quadratic", instances=1)
    with pytest.raises(ValueError, match=r"'quadratic' makes QuadraticTask instances, which do not attack"):
        attack_table.attack_tasks(config)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--eps", "-0.1"], "eps=-0.1 must be > 0"),
        (["--budget", "0"], "budget=0 must be >= 1"),
        (["--instances", "0"], "instances=0 must be >= 1"),
        (["--mu-grid", "1e-3,0"], "mu=0.0 must be > 0"),
        (["--methods", "nes,,spsa"], "has an empty item"),
        (["--methods", "nes,nes"], r"repeats \['nes'\]"),
        (["--methods", "mine=x.pt"], "tunes registered names only"),
        (["--task", "quadratic", "--eps", "0.3"], r"takes no option\(s\) \['eps'\]"),
    ],
)
def test_tune_rejects_bad_input_before_running(argv, match, tuned_path):
    with pytest.raises(ValueError, match=match):
        tune.main(["--task", TASK, "--methods", "nes", *argv])  # a repeated flag: the last one wins
    assert json.loads(tuned_path.read_text())["tasks"] == {TASK: {"nes": {"params": NES_DEFAULT}}}


@pytest.mark.slow
def test_offline_wandb_logs_the_attack_table(table, monkeypatch):
    # a few seconds: wandb starts its service process; offline never touches the network
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder, _, result = table
    png = folder / "t_success.png"
    run_dir = log_attack_table(
        result, png, mode="offline", project="p", config={}, columns=attack_table.WANDB_COLUMNS
    )
    assert run_dir is not None and run_dir.parent == folder / "wandb" and any(run_dir.rglob("*.wandb"))


def test_disabled_wandb_never_imports_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now raises ImportError
    assert (
        log_attack_table({}, tmp_path / "x.png", mode="disabled", project="p", config={}, columns=()) is None
    )


def test_zo_lstm_steps_query_their_own_iterate_so_one_check_suffices():
    lstm = ZOLSTM(q=3, mu=1e-3)
    x, seen = torch.tensor([0.5, -1.0, 2.0, 0.25]), []

    def f(rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return (rows**2).sum(dim=1)

    lstm.advance(x, lstm.initial_carry(4), f, torch.Generator().manual_seed(0), use_query=False)
    rows = torch.cat(seen)
    assert rows.shape[0] == lstm.queries_per_step(4) and any(torch.equal(row, x) for row in rows)
    assert lstm.evaluates_iterate
    traj = Trajectory(losses=[3.0] * 4, queries=[0, 4, 8, 12], success_step=3, success_query=12)
    assert attack_table.queries_with_checks(traj, lstm) == 13


def test_a_method_tuned_with_nothing_to_set_counts_as_tuned(tuned_path):
    # SignHunter has no hyperparameter: its tuning records empty params, which is still a tuning at that key
    _write_tuned(tuned_path, {TASK: {"signhunter": {}}})
    (spec,) = parse_optimizers("signhunter", task=TASK, q=None, tuned_key=KEY_03)
    assert attack_table.tuned_source(spec, TASK) == TASK
    assert attack_table.tuned_source(spec, KEY_03) is None
    config = attack_table.AttackTableConfig(methods="signhunter", eps=0.3)
    with pytest.raises(ValueError, match=r"\['signhunter'\] have values tuned for 'mnist_attack_linf'"):
        attack_table.attack_table(config, progress=False)


@pytest.mark.parametrize(
    ("models", "match"),
    [
        ("resnet,nope", r"model='nope' is not in the mnist zoo; its models: cw, mlp"),
        ("resnet,,mlp", "has an empty or repeated item"),
        ("mlp,mlp", "has an empty or repeated item"),
    ],
)
def test_models_are_checked_before_anything_runs(models, match):
    with pytest.raises(ValueError, match=match):
        attack_table.AttackTableConfig(models=models)
    with pytest.raises(ValueError, match="'imagenet_attack_linf' has no target-model zoo"):
        attack_table.AttackTableConfig(task="imagenet_attack_linf", models="heldout")


def test_models_name_the_zoo_parts_and_go_into_the_output_name():
    heldout = attack_table.AttackTableConfig(models="heldout", eps=0.3)
    assert heldout.model_names() == ["resnet", "mobilenet", "lenet_adv"]
    assert heldout.out_path().name == "mnist_attack_linf_eps0.3_heldout_test.json"
    fashion = attack_table.AttackTableConfig(task="fashion_attack_linf", models="surrogates")
    assert fashion.model_names() == ["cw", "mlp", "lenet", "wide"]
    assert (
        attack_table.AttackTableConfig(models="mlp,cw").out_path().name
        == "mnist_attack_linf_mlp+cw_test.json"
    )
    assert attack_table.AttackTableConfig().model_names() is None


def _entry(rate: float, successes: int, mean: float | None, median: float | None) -> dict:
    return {"white_box": False, "success_rate": rate, "successes": successes,
            "queries_with_checks_mean": mean, "queries_with_checks_median": median}  # fmt: skip


def test_heldout_mean_weighs_models_alike_and_averages_queries_where_a_method_succeeded():
    tables = {
        "a": {"results": {"m": _entry(1.0, 4, 10.0, 8.0)}},
        "b": {"results": {"m": _entry(0.5, 1, 30.0, 30.0)}},
        "c": {"results": {"m": _entry(0.0, 0, None, None)}},
    }
    mean = attack_table.heldout_mean(tables)["m"]
    assert mean["success_rate"] == pytest.approx(0.5)
    assert mean["queries_with_checks_mean"] == pytest.approx(20.0)
    assert mean["queries_with_checks_median"] == pytest.approx(19.0)
    assert (mean["models"], mean["models_with_successes"]) == (3, 2)
    assert attack_table.heldout_mean({}) == {}


@pytest.mark.slow
def test_models_table_runs_each_target_and_writes_the_heldout_mean(tmp_path):
    out = tmp_path / "z.json"
    argv = ["--eps", "0.3", "--models", "mlp,resnet", "--methods", "square,signhunter", "--split", "test",
            "--instances", "2", "--budget", "30", "--wandb", "disabled", "--out", str(out)]  # fmt: skip
    result = attack_table.main(argv)
    assert list(result["models"]) == ["mlp", "resnet"] and result["roles"] == {
        "mlp": "surrogate",
        "resnet": "heldout",
    }
    # the mean is over the held-out targets alone: here resnet's figures
    resnet = result["models"]["resnet"]["results"]
    for method in ("square", "signhunter"):
        assert result["heldout_mean"][method]["success_rate"] == resnet[method]["success_rate"]
        assert result["models"]["mlp"]["model"] == "mlp"
    assert json.loads(out.read_text())["heldout_mean"] == result["heldout_mean"]
    assert "### Mean over the held-out targets (resnet)" in out.with_suffix(".md").read_text()
    assert imread(tmp_path / "z_success.png").shape[0] > 100


def test_models_table_loads_no_heldout_target_inside_surrogates_only():
    config = attack_table.AttackTableConfig(models="resnet", methods="square", instances=1, budget=5)
    with surrogates_only(), pytest.raises(HeldOutTargetError):
        attack_table.attack_table(config, progress=False)
