"""Meta-batches (--meta-batch K), several families at once, and data-parallel meta-training on 2 ranks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import l2l
from l2l.common import distributed
from l2l.learned import MetaConfig, MetaTrainer, validate
from l2l.learned.zo_lmom import ZOLMomConfig
from tests.helpers import ROOT
from train import learned as train_learned
from train import zo_lstm as train_zo_lstm

#: distributed and serial sums of the same per-slot gradients differ in order only: float32 rounding,
#: about 1e-7 relative per meta-iteration, which a few Adam steps of lr 1e-2 keep far below this
TOLERANCE = 1e-6


def _config(**changes) -> MetaConfig:
    base = dict(q=4, mu=1e-3, steps=8, unroll=4, update_lr=1e-2, query_lr=1e-2, seed=0)
    return MetaConfig(**{**base, **changes})


def _tasks(dim: int = 5) -> list:
    return l2l.make_family("quadratic", dim=dim, sizes=(16, 4, 4)).instances("train")


def _val_tasks() -> list:
    return l2l.make_family("quadratic", dim=5, sizes=(16, 4, 4)).instances("val")


def _trained(trainer: MetaTrainer, update: int = 3, query: int = 2) -> MetaTrainer:
    trainer.begin_stage("update")
    for _ in range(update):
        trainer.meta_step()
    trainer.begin_stage("query")
    for _ in range(query):
        trainer.meta_step()
    return trainer


def _flat(trainer: MetaTrainer) -> torch.Tensor:
    modules = trainer.optimizer.modules().values()
    return torch.cat([p.detach().reshape(-1).double() for m in modules for p in m.parameters()])


@pytest.mark.parametrize(
    ("changes", "pinned", "tasks"),
    [
        ({}, (2.2646766013931483, 148.31389087275602, 3164.911759655224), [8]),
        ({"trajectories": 3}, (2.373792115598917, 147.61964984657243, 3387.662403999362), [11, 1, 4]),
    ],
)
def test_meta_batch_one_is_the_old_procedure_bit_for_bit(changes, pinned, tasks):
    # pinned: the weights' sum, absolute sum and index-weighted sum after 3 + 2 meta-iterations, and the
    # slots' task indices, as the code before meta_batch existed (commit d24ef2c) gave them; bit for bit
    # on the machine that recorded them, to 1e-5 relative on another CPU (its kernels round differently:
    # 2e-7 measured), which no change of the procedure would stay within
    trainer = _trained(MetaTrainer(_config(**changes), _tasks()))
    flat = _flat(trainer)
    got = (float(flat.sum()), float(flat.abs().sum()), float((flat * torch.arange(len(flat))).sum()))
    assert got == pytest.approx(pinned, rel=1e-5)
    assert [u.task_index for u in trainer.unrolls] == tasks


def test_meta_batch_is_trajectories_under_the_issues_name():
    a = _trained(MetaTrainer(_config(meta_batch=3), _tasks()))
    b = _trained(MetaTrainer(_config(trajectories=3), _tasks()))
    assert torch.equal(_flat(a), _flat(b))
    assert len(_trained(MetaTrainer(_config(meta_batch=2, trajectories=2), _tasks()), 1, 0).unrolls) == 4


def test_families_are_mixed_round_robin_across_dimensions():
    for config in (_config(meta_batch=4), ZOLMomConfig(q=4, steps=8, unroll=4, meta_batch=4, seed=0)):
        trainer = MetaTrainer(config, {"d5": _tasks(5), "d3": _tasks(3)})
        trainer.begin_stage(trainer.stage_names()[0])
        stats = trainer.meta_step()
        assert torch.isfinite(torch.tensor(stats["meta_loss"]))
        assert [u.x.shape[0] for u in trainer.unrolls] == [5, 3, 5, 3]  # slot j: family j mod 2
        assert [u.task_index >= 16 for u in trainer.unrolls] == [False, True, False, True]
    with pytest.raises(ValueError, match="cannot cover 2 families; set meta_batch to at least 2"):
        MetaTrainer(_config(), {"d5": _tasks(5), "d3": _tasks(3)})
    with pytest.raises(ValueError, match="meta_batch=0 must be >= 1"):
        _config(meta_batch=0)


def _two_rank_body(iterations: int) -> dict:
    """Each rank's part (module level: the spawned rank unpickles it): train K = 4, return the state."""
    torch.set_num_threads(1)
    trainer = _trained(MetaTrainer(_config(meta_batch=4), _tasks()), iterations, iterations)
    state = trainer.state_dict()  # a collective: every rank gathers the slots
    fresh = MetaTrainer(_config(), _tasks()).frozen()  # the same weights on both ranks
    alone = _trained(MetaTrainer(_config(), _tasks()), iterations, iterations)  # rank 1 holds no slot
    return {
        "alone": _flat(alone),
        "val": validate(fresh, _val_tasks(), 8, seed=1, sharded=True).summary(),
        "weights": _flat(trainer),
        "state": state,
        "mine": trainer.mine,
        "world": distributed.world_size(),
    }


@pytest.mark.slow
def test_two_ranks_train_the_serial_weights_within_rounding():
    serial = _trained(MetaTrainer(_config(meta_batch=4), _tasks()), 3, 3)
    ranked = distributed.launch(_two_rank_body, 3, workers=2)
    assert ranked["world"] == 2 and ranked["mine"] == [0, 2]
    # K = 1 on 2 ranks: rank 1 holds no slot and adds zeros, so the weights are the serial ones bit for bit
    assert torch.equal(ranked["alone"], _flat(_trained(MetaTrainer(_config(), _tasks()), 3, 3)))
    # validation split over the 2 ranks gives the serial numbers bit for bit (each run has its seed)
    fresh = MetaTrainer(_config(), _tasks()).frozen()
    assert ranked["val"] == validate(fresh, _val_tasks(), 8, seed=1).summary()
    assert not torch.equal(serial.optimizer.modules()["update_rnn"].cell.weight_ih, torch.zeros(1))
    difference = float((ranked["weights"] - _flat(serial)).abs().max())
    assert difference <= TOLERANCE, f"2 ranks differ from serial by {difference}"
    # the gathered state holds every slot as the serial trainer has it (rank 1's slots 1 and 3 too)
    for mine, theirs in zip(ranked["state"]["unrolls"], serial.state_dict()["unrolls"], strict=True):
        assert (mine["task_index"], mine["step"]) == (theirs["task_index"], theirs["step"])
        assert float((mine["x"] - theirs["x"]).abs().max()) <= 1e-4  # x moved by the rounded weights


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        "--task", "quadratic", "--q", "4", "--mu", "1e-3", "--steps", "8", "--unroll", "4",
        "--update-lr", "1e-2", "--meta-batch", "4", "--query-iterations", "0", "--alpha-grid", "",
        "--val-every", "2", "--val-instances", "2", "--wandb", "disabled", "--out", str(out), *extra,
    ]  # fmt: skip


def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "train.zo_lstm", *_cli(out, *extra),
    ]  # fmt: skip
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _ranks_stderr(done: subprocess.CompletedProcess) -> str:
    """stderr's start and end: the ranks' own messages come before torchrun's report, which names no cause."""
    text = done.stderr
    return text if len(text) <= 4000 else f"{text[:2500]}\n[...]\n{text[-1500:]}"


@pytest.mark.slow
def test_torchrun_meta_batch_resumes_to_the_uninterrupted_run(tmp_path):
    # uninterrupted: 2 ranks through --workers (this process and one spawned); interrupted: torchrun
    # with 2 ranks stops after 2 meta-iterations, then resumes to 4; both reduce over 2 ranks alike
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    done = _torchrun(resumed, "--update-iterations", "2")
    if done.returncode != 0 and "rendezvous" in done.stderr.lower():
        pytest.skip(f"torchrun cannot start a standalone rendezvous here: {done.stderr[-300:]}")
    assert done.returncode == 0, _ranks_stderr(done)
    assert done.stdout.count('"best"') == 1  # rank 0 alone prints the summary
    again = _torchrun(resumed, "--update-iterations", "4", "--resume")
    assert again.returncode == 0, _ranks_stderr(again)
    train_zo_lstm.main(_cli(straight, "--update-iterations", "4", "--workers", "2"))
    a, b = (torch.load(d / "last.pt", weights_only=True)["trainer"] for d in (straight, resumed))
    weights = a["modules"]["update_rnn"]
    assert all(torch.equal(weights[k], b["modules"]["update_rnn"][k]) for k in weights)
    assert len(a["unrolls"]) == 4
    assert [u["task_index"] for u in a["unrolls"]] == [u["task_index"] for u in b["unrolls"]]
    assert all(torch.equal(u["x"], v["x"]) for u, v in zip(a["unrolls"], b["unrolls"], strict=True))
    history = json.loads((resumed / "history.json").read_text())
    assert [record["iteration"] for record in history] == [0, 2, 4]  # continued, not restarted
    assert isinstance(l2l.load_optimizer(resumed / "best.pt"), l2l.learned.ZOLSTM)


@pytest.mark.slow
def test_several_families_validate_each_and_select_on_the_normalised_mean(tmp_path):
    summary = train_learned.main([
        "--optimizer", "zo_lmom", "--task", "quadratic,binary_classification", "--steps", "6",
        "--iterations", "2", "--options", "q=4,unroll=3,meta_batch=2", "--val-every", "1",
        "--val-instances", "2", "--train-instances", "4", "--wandb", "disabled",
        "--out", str(tmp_path / "{task}"),
    ])  # fmt: skip
    out = tmp_path / "quadratic+binary_classification"
    assert summary["out"] == str(out)
    state = torch.load(out / "last.pt", weights_only=True)
    control = state["progress"]["control"]
    assert set(control) == {"quadratic", "binary_classification"} and all(v > 0 for v in control.values())
    for record in json.loads((out / "history.json").read_text()):
        families = record["families"]
        expected = sum(families[f]["final_loss_mean"] / control[f] for f in control) / 2
        assert record["score"] == pytest.approx(expected, rel=1e-12)
    best = l2l.learned.read_checkpoint(out / "best.pt")
    assert (
        set(best["val"]["families"]) == set(control)
        and best["task"]["family"] == "quadratic,binary_classification"
    )
    with pytest.raises(ValueError, match="'quadratic,quadratic' must be one family or distinct"):
        train_learned.main(["--task", "quadratic,quadratic", "--wandb", "disabled"])


@pytest.mark.slow
def test_zo_lstm_across_families_chooses_alpha_on_the_normalised_mean(tmp_path):
    argv = _cli(tmp_path, "--update-iterations", "2", "--task", "quadratic,binary_classification",
                "--train-instances", "4", "--alpha-grid", "0.5,2")  # fmt: skip
    tried = train_zo_lstm.main(argv)["alpha"]["val_weighted_loss"]
    best = l2l.learned.read_checkpoint(tmp_path / "best.pt")
    # each family's weighted loss over its mean over the grid, averaged: the two scores average to 1
    assert set(tried) == {"0.5", "2.0"} and sum(tried.values()) / 2 == pytest.approx(1.0, rel=1e-12)
    assert best["config"]["alpha"] == float(min(tried, key=tried.get))
    assert set(best["val"]["families"]) == {"quadratic", "binary_classification"}
    with pytest.raises(ValueError, match=r"default steps differ .*give --steps"):
        train_learned.family_steps("quadratic,binary_classification")


@pytest.mark.slow
def test_a_run_saved_before_meta_batch_and_workers_existed_resumes(tmp_path):
    argv = _cli(tmp_path, "--meta-batch", "1")  # a repeated flag: the last one wins
    train_zo_lstm.main([*argv, "--update-iterations", "2"])
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("meta_batch", "workers"):
        del state["config"][key]  # as a run saved before the fields existed
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="meta_batch: 1 -> 4"):
        train_zo_lstm.main([*argv, "--update-iterations", "4", "--meta-batch", "4", "--resume"])
    train_zo_lstm.main([*argv, "--update-iterations", "4", "--resume"])
    history = json.loads((tmp_path / "history.json").read_text())
    assert [record["iteration"] for record in history] == [0, 2, 4]
