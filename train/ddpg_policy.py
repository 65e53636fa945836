"""Train a ZO-RL sampling policy with DDPG (papers/003 Algorithm 2) and keep the best on val.

    python -m train.ddpg_policy --task mnist_attack                # -> checkpoints/zo_rl_mnist.zip
    python -m train.ddpg_policy --task binary_classification       # -> checkpoints/zo_rl_binary.zip
    python -m train.ddpg_policy --task mnist_attack --resume       # continue from <out>/last.zip

Episodes run on the **train** split, a fresh instance at every reset (:class:`envs.zo_env.ZOEnv` with
``index=None``). Every ``--val-every`` environment steps (and at the end) the policy runs as the
``zo_rl`` optimizer through ``l2l.run`` on the first ``--val-instances`` **val** instances with fixed
seeds; the lowest mean final loss is kept. After training, P (the chance that a step queries along the
policy's direction rather than a Gaussian one) and the step size eta (a multiple of the MDP's) are chosen
together for that policy on the same val instances at ``--select-budget`` queries and stored in its zip,
as the baselines' step sizes are tuned on val. ``--select-from`` runs only that choice, for a policy zip
that is already trained. With ``--zo-lstm CKPT`` (guided only) the MDP steps inside that ZO-LSTM, and
validation and the choice of P (there is no eta to choose: its UpdateRNN takes the steps) run the
ZO-RL-LSTM. The test split is never touched. Written to ``--out``:

- ``best.zip``: the best-on-val policy (``l2l.load_optimizer`` after ``import agents``), also copied to
  ``--checkpoint``;
- ``last.zip`` and ``last_replay.pkl``: the whole agent and its replay buffer, for ``--resume`` (the
  networks, optimizers, buffer and warm-start state continue exactly; the random streams restart from
  seed + steps done, so a resumed run is not bit-for-bit the uninterrupted one);
- ``progress.json``: every validation, the best one and the wandb run id; and the wandb run folder
  (offline by default), which gets stable-baselines3's metrics, the warm-start cosine and validations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.noise import NormalActionNoise

import l2l
from agents.ddpg import ZORLAgent
from agents.monitoring import TqdmCallback, WandbWriter
from agents.networks import ZORLPolicy
from agents.zo_rl import SHIPPED, ZORL, ZORLLSTM, attach_info, policy_in_lstm, read_policy, zo_rl_from_agent
from envs.mdp import Observe
from envs.zo_env import ZOEnv
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config, parse_float_list
from l2l.common.device import DEVICE_HELP, resolve_device
from l2l.common.io import atomic_write, write_json_atomic
from l2l.common.paths import checkpoints_dir
from l2l.diagnostics import cosine_trace
from l2l.learned.meta import is_better, validate
from l2l.tasks import default_steps
from l2l.tasks.base import Task

#: config fields that may differ between a run and its --resume
RESUMABLE_CHANGES = {
    "resume", "wandb", "wandb_project", "timesteps", "threads", "val_every", "checkpoint",
    "policy_prob_grid", "eta_scale_grid", "select_budget", "select_from",
}  # fmt: skip


@dataclass
class TrainConfig:
    """Train a ZO-RL sampling policy (DDPG) on a task family's train split, selecting on its val split."""

    task: str = doc_field("mnist_attack", "task family to train on (see l2l.family_names())")
    steps: int | None = doc_field(
        None, "steps per episode, the iteration budget (none: the family default_steps, 200; 500 for binary)"
    )
    mu: float | None = doc_field(None, "finite-difference radius (none: the task's tuned ZO-SGD mu)")
    eta: float | None = doc_field(
        None, "learning rate of a step (none: tuned ZO-SGD delta / (d q) for single, delta / d for guided)"
    )
    directions: Literal["single", "guided"] = doc_field(
        "single",
        "single: the action is one query direction (2 queries per step; the first build); guided: "
        "papers/003's q directions a + N(0, I) around the action a, at q + 1 queries per step",
    )
    q: int | None = doc_field(None, "directions per guided step (none: the task's tuned ZO-SGD q)")
    zo_lstm: str | None = doc_field(
        None,
        "train inside this ZO-LSTM checkpoint (ZO-RL-LSTM, papers/003 sec. 3.3; needs --directions guided): "
        "the directions are s * (a + z_i) with its QueryRNN's std s and its UpdateRNN takes the step; q "
        "and mu are its own, and validation and the P choice run the ZO-RL-LSTM",
    )
    observe: Literal[Observe, "auto"] = doc_field(
        "auto",
        "what the policy sees: the iterate, the attacked image, or image_delta (the image and the "
        "normalized perturbation as two channels); iterate_estimate / image_estimate / image_delta_estimate "
        "add the previous step's ZO estimate, normalized, as a last channel; iterate_trend / image_trend "
        "(guided only) add the running mean of the estimates' unbiased noise parts instead "
        "(envs.mdp; auto: image for attack tasks)",
    )
    reward_scale: float = doc_field(1.0, "factor on the rewards (the loss decreases)")
    train_instances: int | None = doc_field(
        None, "draw episodes from the first N train instances (none: all)"
    )
    timesteps: int = doc_field(20000, "environment steps to train for, in all (a resumed run counts on)")
    learning_rate: float = doc_field(1e-3, "Adam learning rate of actor and critic")
    buffer_size: int = doc_field(
        20000, "replay buffer transitions (--resume saves them all: ~190 MB for 20,000 on MNIST)"
    )
    batch_size: int = doc_field(64, "transitions per gradient step")
    learning_starts: int = doc_field(500, "environment steps before the first gradient step")
    train_freq: int = doc_field(1, "environment steps between training rounds (1: Algorithm 2's every step)")
    gradient_steps: int = doc_field(1, "gradient steps per training round")
    tau: float = doc_field(0.005, "soft update rate of the target networks")
    gamma: float = doc_field(0.9, "discount factor")
    n_steps: int = doc_field(
        1, "rewards summed in the critic's TD target (stable-baselines3's n-step returns; 1: papers/003's)"
    )
    noise_std: float = doc_field(0.2, "std of the Gaussian exploration noise on the [-1, 1] actions")
    warm_start: bool = doc_field(True, "Algorithm 2's Gaussian warm start until the cosine switch")
    switch_threshold: float | None = doc_field(
        None, "epsilon of the switch (none: q / (d + q), rho of a policy as good as the Gaussian estimate)"
    )
    switch_window: int = doc_field(50, "warm-start cosines averaged for the switch test (1: as printed)")
    probe_q: int = doc_field(20, "q, Gaussian directions of the warm-start estimate")
    imitate: bool = doc_field(
        False, "until the switch the actor regresses onto the warm-start actions (our addition; agents.ddpg)"
    )
    imitation_loss: Literal["squares", "cosine"] = doc_field(
        "squares",
        "what --imitate fits: squares (the mean action) or cosine (the direction, at the actions' norm)",
    )
    terminate_on_success: bool = doc_field(
        True, "end a training episode once the task is solved (false: run all --steps, as val and eval do)"
    )
    width: int = doc_field(8, "channels of the convolutional networks (image iterates)")
    hidden: int = doc_field(64, "hidden units of the MLP layers")
    val_every: int = doc_field(2000, "environment steps between validations (and saves of last.zip)")
    val_instances: int = doc_field(10, "val instances scored at each validation")
    val_steps: int | None = doc_field(None, "steps of a validation run (none: --steps)")
    policy_prob_grid: str = doc_field(
        "0.5,0.25,0.1",
        "P values tried on val after training (P: chance a step queries along the policy's direction, "
        "else a Gaussian one); the best goes into the policy zip ('': keep P = 1)",
    )
    eta_scale_grid: str = doc_field(
        "0.5,1",
        "multiples of the MDP's eta tried with every P on val after training; the best pair goes into "
        "the policy zip ('': keep eta)",
    )
    select_budget: int = doc_field(
        4000, "queries per val run of the P and eta choice (the horizon of eval.compare --budget)"
    )
    select_from: str | None = doc_field(
        None, "skip training: choose P and eta on val for this trained policy zip, then publish it as usual"
    )
    seed: int = doc_field(0, "seed of the networks, the instance draws and the exploration")
    threads: int = doc_field(1, "torch CPU threads")
    out: str = doc_field("results/zo_rl/{task}", "output folder ({task} is filled in)")
    checkpoint: str | None = doc_field(
        None, "where the best policy is copied (none: checkpoints/zo_rl_mnist.zip / zo_rl_binary.zip by task)"
    )
    wandb: Literal["online", "offline", "disabled"] = doc_field(
        "offline", "wandb mode: offline needs no account or network; online uploads"
    )
    wandb_project: str = doc_field("l2l-zo", "wandb project name")
    resume: bool = doc_field(False, "continue from <out>/last.zip (pass the same options as the first run)")
    device: str = doc_field("cpu", DEVICE_HELP)

    def __post_init__(self) -> None:
        resolve_device(self.device)  # refuse cuda on a machine without one, before any work
        if self.steps is None:
            self.steps = default_steps(self.task)
        if self.val_steps is None:
            self.val_steps = self.steps
        check_at_least(self, (
            "steps",
            "timesteps",
            "buffer_size",
            "batch_size",
            "train_freq",
            "n_steps",
            "val_every",
            "val_instances",
            "select_budget",
        ))
        for name in ("learning_starts", "gradient_steps", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if any(not 0 <= p <= 1 for p in parse_float_list(self.policy_prob_grid, "policy_prob_grid")):
            raise ValueError(f"policy_prob_grid={self.policy_prob_grid!r} must hold probabilities in [0, 1]")
        if any(not a > 0 for a in parse_float_list(self.eta_scale_grid, "eta_scale_grid")):
            raise ValueError(f"eta_scale_grid={self.eta_scale_grid!r} must hold multiples > 0")
        if not 0 <= self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ValueError(f"gamma={self.gamma} must be in [0, 1] and tau={self.tau} in (0, 1]")

    def out_dir(self) -> Path:
        return Path(self.out.replace("{task}", self.task))

    def checkpoint_path(self) -> Path | None:
        """Where the best policy is copied: --checkpoint, else the shipped file of its task (or None)."""
        if self.checkpoint is not None:
            return Path(self.checkpoint)
        return checkpoints_dir() / SHIPPED[self.task] if self.task in SHIPPED else None


def make_env(cfg: TrainConfig) -> ZOEnv:
    """The training MDP: train-split instances, a fresh one at every reset.

    ``observe=auto`` shows attack tasks' policies the attacked image: the perturbation alone starts at 0
    for every image, so it cannot tell the policy which image it attacks (see :mod:`envs.mdp`; a smoke
    run's cosines are in docs/results/zo_rl.md).
    """
    observe = cfg.observe
    if observe == "auto":
        probe = l2l.make_family(cfg.task).instance("train", 0)
        observe = "image" if probe.perturbs_image else "iterate"
    return ZOEnv(
        cfg.task, split="train", index=None, instances=cfg.train_instances, mu=cfg.mu, eta=cfg.eta,
        steps=cfg.steps or 200, observe=observe, reward_scale=cfg.reward_scale, directions=cfg.directions,
        q=cfg.q, zo_lstm=cfg.zo_lstm, terminate_on_success=cfg.terminate_on_success,
    )  # fmt: skip


def switch_threshold(cfg: TrainConfig) -> float | str | None:
    """Epsilon of the switch: None without the warm start, else the config's or ``auto`` (q / (d + q))."""
    if not cfg.warm_start:
        return None
    return "auto" if cfg.switch_threshold is None else cfg.switch_threshold


def build_agent(cfg: TrainConfig, env: ZOEnv) -> ZORLAgent:
    """A fresh agent with the networks of :mod:`agents.networks` sized for ``env``."""
    noise = NormalActionNoise(np.zeros(env.dim), cfg.noise_std * np.ones(env.dim)) if cfg.noise_std else None
    extractor = {"image_shape": env.image_shape, "width": cfg.width, "hidden": cfg.hidden}
    return ZORLAgent(
        ZORLPolicy, env, learning_rate=cfg.learning_rate, buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, tau=cfg.tau, gamma=cfg.gamma,
        n_steps=cfg.n_steps,
        train_freq=cfg.train_freq, gradient_steps=cfg.gradient_steps, action_noise=noise, seed=cfg.seed,
        device="cpu",
        policy_kwargs={"net_arch": [cfg.hidden], "features_extractor_kwargs": extractor},
        switch_threshold=switch_threshold(cfg), switch_window=cfg.switch_window, probe_q=cfg.probe_q,
        imitate=cfg.imitate, imitation_loss=cfg.imitation_loss,
    )  # fmt: skip


def save_agent(agent: ZORLAgent, path: Path, replay: Path | None = None) -> None:
    """Write the agent (and, given ``replay``, its replay buffer) atomically."""
    atomic_write(path, lambda tmp: agent.save(tmp))
    if replay is not None:
        atomic_write(replay, lambda tmp: agent.save_replay_buffer(tmp))


def resume_agent(cfg: TrainConfig, env: ZOEnv, out: Path) -> tuple[ZORLAgent, dict]:
    """The agent, replay buffer and progress saved in ``out`` (refusing changed options)."""
    path = out / "last.zip"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no agent at {str(path)!r}; run without --resume first")
    agent = ZORLAgent.load(path, env=env, device="cpu")
    saved, now = agent.zo_rl["train_config"], dataclasses.asdict(cfg)
    # a run saved before an option existed ran at that option's default
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    before = {k: saved.get(k, defaults.get(k)) for k in now}
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and before[k] != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"--resume with different options ({diffs}); pass the options of the first run")
    agent.load_replay_buffer(out / "last_replay.pkl")
    agent.set_random_seed(cfg.seed + agent.num_timesteps)
    return agent, json.loads((out / "progress.json").read_text())


class Validator(BaseCallback):
    """Every ``val_every`` steps (and at the end): validate the policy as ``zo_rl``, keep the best, save.

    Args:
        cfg: the training config.
        env: the training MDP (its mu, eta and observation define the optimizer).
        val_tasks: the val instances.
        progress: the loop's record (history, best, wandb id), saved to ``progress.json``.
        run: the wandb run, or None.
        bar: the progress bar whose note shows the latest validation.
    """

    def __init__(
        self, cfg: TrainConfig, env: ZOEnv, val_tasks: list[Task], progress: dict, run: Any, bar: TqdmCallback
    ):
        super().__init__()
        self.cfg, self.env, self.val_tasks, self.progress, self.run, self.bar = (
            cfg,
            env,
            val_tasks,
            progress,
            run,
            bar,
        )
        self.out = cfg.out_dir()

    def _on_step(self) -> bool:
        if self.model.num_timesteps % self.cfg.val_every == 0:
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        history = self.progress["history"]
        if not history or history[-1]["timesteps"] != self.model.num_timesteps:
            self.evaluate()

    def evaluate(self) -> dict:
        agent = self.model
        optimizer: ZORL | ZORLLSTM
        if self.env.lstm is not None:  # the policy inside the ZO-LSTM it trains in, asked at every step
            optimizer = policy_in_lstm(agent, policy_prob=1.0)
        else:
            optimizer = ZORL(
                policy=agent.policy, mu=self.env.mu, eta=self.env.eta, observe=self.env.observe,
                directions=self.env.directions, q=self.env.q,
            )  # fmt: skip
        val = validate(optimizer, self.val_tasks, self.cfg.val_steps or 1, seed=self.cfg.seed)
        record = {"timesteps": agent.num_timesteps, "switched": agent.switched, "rho_mean": agent.rho_mean,
                  **{k: v for k, v in val.summary().items() if k != "loss_curve_mean"},
                  "cosine_mean": self.val_cosine(optimizer)}  # fmt: skip
        self.progress["history"].append(record)
        best = self.progress["best"]
        attach_info(agent, self.env, dataclasses.asdict(self.cfg), {**record, "split": "val"})
        if is_better(val.final_loss_mean, None if best is None else best["final_loss_mean"]):
            self.progress["best"] = record
            self.save_best()
        save_agent(agent, self.out / "last.zip", self.out / "last_replay.pkl")
        write_json_atomic(self.out / "progress.json", self.progress)
        if self.run is not None:
            self.run.log({f"val/{k}": float(v) for k, v in record.items() if isinstance(v, int | float)},
                         step=agent.num_timesteps)  # fmt: skip
        self.bar.note = f"val {val.final_loss_mean:.4g} (best {self.progress['best']['final_loss_mean']:.4g})"
        return record

    def val_cosine(self, optimizer: ZORL | ZORLLSTM) -> float:
        """Mean cosine of the policy's estimates to the true gradients in the first 3 val runs (analysis)."""
        traces = [
            cosine_trace(optimizer, task, self.cfg.val_steps or 1, seed=i)
            for i, task in enumerate(self.val_tasks[:3])
        ]
        return float(np.mean([c for _, cosines in traces for c in cosines]))

    def save_best(self) -> None:
        publish_best(self.model, self.cfg, self.out)


def start_wandb(cfg: TrainConfig, out: Path, progress: dict) -> Any:
    """A wandb run (resumed when the training is), or None when --wandb disabled."""
    if cfg.wandb == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb  # imported here: slow, and unused when disabled

    progress["wandb_id"] = progress.get("wandb_id") or uuid.uuid4().hex[:12]
    return wandb.init(
        project=cfg.wandb_project, mode=cfg.wandb, dir=str(out), config=dataclasses.asdict(cfg),
        job_type="train_ddpg_policy", id=progress["wandb_id"], resume="allow",
    )  # fmt: skip


def val_instances(cfg: TrainConfig) -> list[Task]:
    """The first ``--val-instances`` val instances (all of them if the split is smaller)."""
    family = l2l.make_family(cfg.task, device=cfg.device)
    return family.instances("val", limit=min(cfg.val_instances, family.split_size("val")))


def select_step_options(cfg: TrainConfig, agent: ZORLAgent, out: Path, val_tasks: list[Task]) -> dict | None:
    """Choose P and eta of a trained policy (``read_policy``) on val; publish it with them as ``best.zip``.

    P is the chance of querying along the policy's direction; eta, the step size, is the MDP's times a
    value of ``--eta-scale-grid`` (a 2-query step wants a smaller eta than the q-direction estimate it
    was set from). Every pair runs the policy as ``zo_rl`` on the val instances for ``--select-budget``
    queries; the lowest mean final loss wins and is stored in the zip (and its copy at ``--checkpoint``),
    where ``load_zo_rl`` reads it. The networks are unchanged. Returns the val loss of every pair tried,
    or None when both grids are empty.
    """
    in_lstm = bool(agent.zo_rl["env"].get("zo_lstm"))
    probs = parse_float_list(cfg.policy_prob_grid, "policy_prob_grid")
    scales = [] if in_lstm else parse_float_list(cfg.eta_scale_grid, "eta_scale_grid")  # its UpdateRNN steps
    if not probs and not scales:
        return None
    trained = zo_rl_from_agent(agent)
    mdp_eta = agent.zo_rl["env"]["eta"]  # not a previous choice: the grid means the same on every zip
    pairs = [(p, mdp_eta * a) for p in probs or [trained.policy_prob] for a in scales or [1.0]]
    steps = cfg.select_budget // trained.queries_per_step(val_tasks[0].dim)

    def candidate(prob: float, eta: float) -> ZORL | ZORLLSTM:
        if in_lstm:
            return policy_in_lstm(agent, policy_prob=prob)
        return dataclasses.replace(trained, policy_prob=prob, eta=eta)  # type: ignore[type-var]

    scores = {pair: validate(candidate(*pair), val_tasks, steps, cfg.seed).final_loss_mean for pair in pairs}
    best = min(pairs, key=lambda pair: scores[pair])
    tried = {f"P={p:g},eta={eta:.4g}": v for (p, eta), v in scores.items()}
    agent.zo_rl["policy_prob"], agent.zo_rl["eta"] = best
    agent.zo_rl.setdefault("val", {})["step_options_choice"] = {
        "budget": cfg.select_budget, "final_loss_mean": tried,
    }  # fmt: skip
    publish_best(agent, cfg, out)
    return {"policy_prob": best[0], "eta": best[1], "val_final_loss": tried}


def publish_best(agent: ZORLAgent, cfg: TrainConfig, out: Path) -> None:
    """Write ``agent``'s networks (no Adam moments, no targets) as ``out/best.zip``, and the checkpoint."""
    atomic_write(out / "best.zip", agent.save_policy_only)
    target = cfg.checkpoint_path()
    if target is not None:
        atomic_write(target, lambda tmp: shutil.copyfile(out / "best.zip", tmp))


def callbacks(
    cfg: TrainConfig, agent: ZORLAgent, env: ZOEnv, progress: dict, run: Any, val_tasks: list[Task]
) -> list[BaseCallback]:
    """Progress bar, validation and checkpoints, and (with wandb) the SB3 integration's callback."""
    bar = TqdmCallback(cfg.timesteps, initial=agent.num_timesteps)
    found: list[BaseCallback] = [bar, Validator(cfg, env, val_tasks, progress, run, bar)]
    if run is not None:
        from wandb.integration.sb3 import WandbCallback  # records the agent's settings in the run config

        found.append(WandbCallback(gradient_save_freq=0, log=None))
    return found


def attach_logger(agent: ZORLAgent, out: Path, run: Any) -> None:
    """stable-baselines3's metrics to ``out/sb3/progress.csv`` and, with wandb, to the run."""
    formats = [make_output_format("csv", str(out / "sb3"))]
    if run is not None:
        formats.append(WandbWriter(run))
    agent.set_logger(Logger(str(out / "sb3"), formats))


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(TrainConfig, argv)
    torch.set_num_threads(cfg.threads)
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    if cfg.select_from is not None:
        with user_input():  # a bad task or policy path is the command line's error
            val_tasks, trained = val_instances(cfg), read_policy(cfg.select_from)
        choice = select_step_options(cfg, trained, out, val_tasks)
        print(json.dumps({"step_options": choice, "checkpoint": str(cfg.checkpoint_path())}, indent=2))
        return {"step_options": choice, "out": str(out)}
    with user_input():  # a bad task, observation or --resume folder is the command line's error
        env = make_env(cfg)
        if cfg.resume:
            agent, progress = resume_agent(cfg, env, out)
        else:
            agent, progress = build_agent(cfg, env), {"history": [], "best": None, "wandb_id": None}
    attach_info(agent, env, dataclasses.asdict(cfg))
    run = start_wandb(cfg, out, progress)
    attach_logger(agent, out, run)
    val_tasks = val_instances(cfg)
    remaining = cfg.timesteps - agent.num_timesteps
    if remaining > 0:
        agent.learn(remaining, callback=callbacks(cfg, agent, env, progress, run, val_tasks), log_interval=1,
                    reset_num_timesteps=not cfg.resume)  # fmt: skip
    choice = select_step_options(cfg, read_policy(out / "best.zip"), out, val_tasks)
    if run is not None:
        if choice is not None:
            run.summary.update({"policy_prob": choice["policy_prob"], "eta": choice["eta"]})
        run.finish()
    summary = {"best": progress["best"], "step_options": choice, "out": str(out),
               "checkpoint": str(cfg.checkpoint_path())}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
