"""Sharded evaluation (eval.distributed): --workers N and torchrun give the serial results bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import l2l
from eval import attack_table, compare, order_attack, tune
from eval.distributed import launch, rank, shard, sharded_map, world_size
from eval.headtohead import run_grid
from l2l.common import options
from l2l.common.cli import run_cli
from tests.helpers import ROOT, without_timings

QUADRATIC = [
    "--task", "quadratic", "--methods", "zo_sgd,zo_adam", "--instances", "2", "--trials", "2",
    "--steps", "8", "--q", "4", "--wandb", "disabled",
]  # fmt: skip


def _json(path: Path) -> dict:
    return without_timings(json.loads(path.read_text()))


def _grid(progress: bool = False) -> list:
    tasks = l2l.make_family("quadratic").instances("test", limit=2)
    optimizers = [(name, l2l.make_optimizer(name, q=4)) for name in ("zo_sgd", "zo_adam")]
    # bit-identity holds at one thread count (the CLIs pin --threads); the test process's default
    # count (2 on CI, where OMP_NUM_THREADS is unset) need not be the spawned workers'
    with options.pinned_threads(1):
        return run_grid(optimizers, tasks, trials=2, steps=8, seed=3, progress=progress)


def _fail_on(item: int) -> int:
    if item in (1, 2):
        raise FloatingPointError(f"item {item}")
    return item


def _on_every_rank(_: None) -> dict:
    """What each rank of the launched group does (module level: the spawned workers unpickle it)."""
    try:
        sharded_map(_fail_on, list(range(4)))  # item 1 is rank 1's, item 2 rank 0's own
        error = None
    except FloatingPointError as err:
        error = str(err)
    return {
        "world": world_size(),
        "rank": rank(),
        "who": sharded_map(lambda item: (item, rank()), list(range(5))),
        "error": error,
        "records": _grid(),
    }


def test_shard_is_round_robin_and_partitions_the_grid():
    items = list(range(7))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for part in parts for x in part) == items
    with pytest.raises(ValueError, match="rank=3"):
        shard(items, 3, 3)


@pytest.mark.slow
def test_launched_group_gathers_records_in_serial_order_bit_for_bit():
    out = launch(_on_every_rank, None, workers=2)
    assert not dist.is_initialized()  # torn down, so the next launch (or test) starts clean
    assert (out["world"], out["rank"]) == (2, 0)
    assert out["who"] == [(0, 0), (1, 1), (2, 0), (3, 1), (4, 0)]
    assert out["error"] == "item 1"  # the earliest failing item's error, raised on rank 1, reaches rank 0
    serial = _grid()
    assert len(out["records"]) == len(serial) == 8
    for got, want in zip(out["records"], serial, strict=True):
        assert (got.optimizer, got.instance, got.trial, got.seed) == (
            want.optimizer,
            want.instance,
            want.trial,
            want.seed,
        )
        assert got.trajectory.losses == want.trajectory.losses
        assert got.trajectory.queries == want.trajectory.queries
        assert torch.equal(got.trajectory.x, want.trajectory.x)


@pytest.mark.slow
def test_compare_with_two_workers_writes_the_serial_json(tmp_path):
    serial = compare.main([*QUADRATIC, "--out", str(tmp_path / "serial.json")])
    sharded = compare.main([*QUADRATIC, "--out", str(tmp_path / "sharded.json"), "--workers", "2"])
    assert _json(tmp_path / "sharded.json") == _json(tmp_path / "serial.json")
    assert without_timings(sharded) == without_timings(serial)
    assert (tmp_path / "sharded_runs.csv").is_file() and (tmp_path / "sharded.md").is_file()


@pytest.mark.slow
def test_tune_with_two_workers_follows_the_serial_search():
    argv = ["--task", "quadratic", "--methods", "zo_sgd", "--instances", "2", "--steps", "5", "--no-write"]
    assert tune.main([*argv, "--workers", "2"]) == tune.main(argv)


@pytest.mark.slow
def test_attack_table_with_two_workers_writes_the_serial_json(tmp_path):
    argv = [
        "--methods", "zo_sgd,square", "--instances", "2", "--budget", "60", "--wandb", "disabled",
    ]  # fmt: skip
    attack_table.main([*argv, "--out", str(tmp_path / "serial.json")])
    attack_table.main([*argv, "--out", str(tmp_path / "sharded.json"), "--workers", "2"])
    serial = _json(tmp_path / "serial.json")
    assert _json(tmp_path / "sharded.json") == serial
    assert any(row["success_step"] is not None for row in serial["per_run"])  # the table is not all misses


@pytest.mark.skipif(
    not (ROOT / "checkpoints" / "fashion_ranking.pt").is_file(), reason="needs checkpoints/fashion_ranking.pt"
)
@pytest.mark.slow
def test_order_attack_with_two_workers_writes_the_serial_json(tmp_path):
    argv = [
        "--methods", "rand,nes", "--N", "inf", "--eps", "4", "--budget", "60", "--split", "val",
        "--instances", "3", "--no-progress",
    ]  # fmt: skip
    order_attack.main([*argv, "--out", str(tmp_path / "serial.json")])
    order_attack.main([*argv, "--out", str(tmp_path / "sharded.json"), "--workers", "2"])
    serial = _json(tmp_path / "serial.json")
    sharded = _json(tmp_path / "sharded.json")
    assert sharded.pop("config")["workers"] == 2 and serial.pop("config")["workers"] == 1
    assert sharded == serial and serial["results"]["rand"]["runs"] == 3


@pytest.mark.slow
def test_torchrun_writes_the_serial_json_and_prints_once(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "eval.compare", *QUADRATIC, "--out", str(tmp_path / "torchrun.json"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "endezvous" in done.stderr:
        pytest.skip(f"torchrun cannot start a standalone rendezvous here: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1  # rank 1 printed nothing
    compare.main([*QUADRATIC, "--out", str(tmp_path / "serial.json")])
    assert _json(tmp_path / "torchrun.json") == _json(tmp_path / "serial.json")


@pytest.mark.parametrize("cli", [compare, tune, attack_table, order_attack])
def test_workers_below_one_is_refused(cli):
    with pytest.raises(ValueError, match=r"workers=0 must be an integer >= 1"):
        cli.main(["--workers", "0"])


def test_workers_below_one_is_a_one_line_cli_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(compare.main, ["--workers", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: workers=0 must be an integer >= 1")


def test_workers_must_match_torchrun(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"workers=3 but torchrun started WORLD_SIZE=2"):
        launch(_on_every_rank, None, workers=3)


_LEAVING_RANK = """
import atexit
from l2l.common import options
from l2l.common.cli import run_cli
atexit.register(lambda: print("finalized"))
run_cli(lambda argv: print("{}-done", end=""))
"""


@pytest.mark.parametrize("world", ["1", "2"])
@pytest.mark.slow
def test_a_torchrun_rank_of_many_leaves_without_finalization_after_a_clean_run(world):
    # the interpreter's teardown of gloo threads can abort a finished rank, so run_cli skips it; a
    # single process (world 1, or no torchrun) finalizes as usual
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": world, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _LEAVING_RANK.format(world)], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"{world}-done" if world == "2" else f"{world}-donefinalized\n")


_BAR_ON_EVERY_RANK = """
from tqdm.auto import tqdm
from l2l.common import distributed

def body(_):
    for _ in tqdm(range(2), disable=True):  # tqdm makes a multiprocessing lock even when disabled
        pass
    return distributed.rank()

if __name__ == "__main__":
    print(distributed.launch(body, None, workers=2))
"""


@pytest.mark.slow
def test_spawned_ranks_leave_no_semaphore_behind(tmp_path):
    script = tmp_path / "bars.py"
    script.write_text(_BAR_ON_EVERY_RANK)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert "leaked" not in done.stderr, done.stderr
