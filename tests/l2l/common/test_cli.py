"""Command-line errors: a bad name or value is one ``error:`` line and exit status 2; bugs keep tracebacks."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval import compare, cosine
from l2l.common.cli import USAGE_STATUS, run_cli, user_input
from tests.helpers import ROOT


#: CLIs whose ``__main__`` block another branch owns; the lead switches them to run_cli on merge
def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env.pop("L2L_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(done: subprocess.CompletedProcess, start: str) -> None:
    assert done.returncode == USAGE_STATUS, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), done.stderr


@pytest.mark.slow
def test_an_unknown_task_is_one_line_and_status_2():
    done = run_module("eval.compare", "--task", "nope", "--wandb", "disabled")
    assert_one_line_error(done, "error: unknown task 'nope'; registered tasks: binary_classification")


def test_a_malformed_option_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as info:
        compare.main(["--steps", "many"])  # argparse's own error: the same one line, from Python too
    assert info.value.code == USAGE_STATUS
    err = capsys.readouterr().err
    assert err.startswith("error: argument --steps: invalid int value: 'many' (see ") and err.count("\n") == 1


def test_a_value_the_config_refuses_is_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv("L2L_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(cosine.main, ["--task", "quadratic", "--methods", "zo_gs,nope"])
    assert info.value.code == USAGE_STATUS
    err = capsys.readouterr().err
    assert err.startswith("error: unknown method(s) ['nope'] in --methods") and err.count("\n") == 1


def test_main_called_from_python_raises_the_library_error():
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        compare.main(["--task", "nope", "--wandb", "disabled"])


def fails_in_setup(argv: list[str] | None) -> None:
    with user_input():
        raise FileNotFoundError("no checkpoint at 'x.pt'\n(train one first)")


def fails_in_the_run(argv: list[str] | None) -> None:
    with user_input():
        pass
    raise ValueError("a bug deep in a run")


def test_run_cli_reports_setup_errors_and_lets_bugs_through(capsys, monkeypatch):
    monkeypatch.delenv("L2L_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(fails_in_setup, [])
    assert info.value.code == USAGE_STATUS
    assert capsys.readouterr().err == "error: no checkpoint at 'x.pt' (train one first)\n"
    with pytest.raises(ValueError, match="a bug deep in a run"):
        run_cli(fails_in_the_run, [])
    monkeypatch.setenv("L2L_TRACEBACK", "1")  # the traceback of a user's error, on request
    with pytest.raises(FileNotFoundError):
        run_cli(fails_in_setup, [])


def main_block_calls(path: Path) -> list[str]:
    """The functions called in the module's ``if __name__ == "__main__":`` blocks."""
    calls = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            calls += [ast.unparse(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)]
    return calls


def test_every_cli_runs_through_run_cli():
    modules = [p for layer in ("train", "eval") for p in sorted((ROOT / layer).glob("*.py"))]
    clis = {str(p.relative_to(ROOT)): main_block_calls(p) for p in modules if main_block_calls(p)}
    assert len(clis) >= 8  # eval.compare, .cosine, .tune, .bench, ...; train.ddpg_policy, ...
    assert {name: calls for name, calls in clis.items() if calls != ["run_cli"]} == {}
