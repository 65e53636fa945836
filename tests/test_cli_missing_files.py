"""Every CLI option that reads a file reports a missing one as one ``error:`` line and exit status 2.

Each case runs the CLI's ``main`` in-process under :func:`l2l.common.cli.run_cli` (as ``python -m``
does), so a FileNotFoundError that escapes the CLI's own ``user_input`` blocks (``--resume`` with no
saved state, ``--init-from`` a missing file) must still take the one-line path, not a traceback.
"""

from __future__ import annotations

import importlib

import pytest

from l2l.common.cli import USAGE_STATUS, run_cli

MISSING_PT = "missing/ckpt.pt"
MISSING_ZIP = "missing/policy.zip"
TRAIN_LEARNED = ["--optimizer", "zo_lmom", "--task", "quadratic", "--iterations", "1", "--wandb", "disabled"]
TRAIN_ZO_LSTM = [
    "--task", "quadratic", "--update-iterations", "1", "--query-iterations", "0", "--wandb", "disabled"
]  # fmt: skip
DDPG = ["--task", "quadratic", "--wandb", "disabled"]

#: (CLI module, its arguments with {tmp} for a fresh folder, the file the error must name)
CASES = [
    ("train.learned", [*TRAIN_LEARNED, "--init-from", MISSING_PT, "--out", "{tmp}"], MISSING_PT),
    ("train.learned", [*TRAIN_LEARNED, "--resume", "--out", "{tmp}"], "last.pt"),
    ("train.zo_lstm", [*TRAIN_ZO_LSTM, "--init-from", MISSING_PT, "--out", "{tmp}"], MISSING_PT),
    ("train.zo_lstm", [*TRAIN_ZO_LSTM, "--resume", "--out", "{tmp}"], "last.pt"),
    ("train.ddpg_policy", [*DDPG, "--select-from", MISSING_ZIP, "--out", "{tmp}"], MISSING_ZIP),
    ("train.ddpg_policy", [*DDPG, "--resume", "--out", "{tmp}"], "last.zip"),
    ("train.ddpg_policy", [*DDPG, "--directions", "guided", "--zo-lstm", MISSING_PT, "--out", "{tmp}"],
     MISSING_PT),
    ("eval.compare", ["--task", "quadratic", "--methods", f"mine={MISSING_PT}", "--out", "{tmp}/c.json"],
     MISSING_PT),
    ("eval.compare", ["--task", "quadratic", "--methods", f"mine={MISSING_ZIP}", "--out", "{tmp}/c.json"],
     MISSING_ZIP),
    ("eval.compare", ["--task", "quadratic", "--methods", f"mine={MISSING_ZIP}#lstm={MISSING_PT}",
                      "--out", "{tmp}/c.json"], MISSING_PT),
    ("eval.attack_table", ["--methods", f"mine={MISSING_PT}", "--instances", "1", "--out", "{tmp}/a.json"],
     MISSING_PT),
    ("eval.cosine", ["--task", "quadratic", "--methods", "zo_lstm", "--zo-lstm", MISSING_PT,
                     "--out", "{tmp}/c.json"], MISSING_PT),
    ("eval.cosine", ["--task", "binary_classification", "--methods", "zo_rl", "--zo-rl", MISSING_ZIP,
                     "--out", "{tmp}/c.json"], MISSING_ZIP),
    ("eval.policy_bound", ["--task", "quadratic", "--zo-rl", MISSING_ZIP, "--out", "{tmp}/p.json"],
     MISSING_ZIP),
    ("eval.val_curves", ["--runs", "a=missing/history.json", "--out", "{tmp}/v.png"], "missing/history.json"),
]  # fmt: skip


@pytest.mark.parametrize(("module", "argv", "named"), CASES, ids=[f"{c[0]}:{c[1][-3]}" for c in CASES])
def test_a_missing_file_is_one_error_line(module, argv, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the missing paths are relative: nothing outside tmp_path is read
    monkeypatch.delenv("L2L_TRACEBACK", raising=False)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [arg.replace("{tmp}", str(tmp_path / "out")) for arg in argv])
    assert exit_info.value.code == USAGE_STATUS
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_a_missing_file_outside_user_input_is_still_the_users(capsys):
    """The central rule of run_cli: a FileNotFoundError raised anywhere is a command-line error."""

    def main(argv):
        raise FileNotFoundError("no file at 'x.pt'")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    assert exit_info.value.code == USAGE_STATUS
    assert capsys.readouterr().err == "error: no file at 'x.pt'\n"


def test_other_errors_outside_user_input_keep_their_traceback():
    def main(argv):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_cli(main, [])
