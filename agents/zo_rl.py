"""Trained ZO-RL sampling policies as drop-in ZO optimizers: ``zo_rl`` and ``zo_rl_lstm`` (papers/003).

A policy file is the stable-baselines3 ``.zip`` that ``python -m train.ddpg_policy`` writes: the
:class:`~agents.ddpg.ZORLAgent` with its networks, plus ``zo_rl``, a dict that says which MDP it was
trained on (task, mu, eta, observation; :meth:`envs.zo_env.ZOEnv.describe`), the training config, its
val metrics and the l2l version. ``l2l.load_optimizer`` reads it through this package's ``l2l.loaders``
entry point (:func:`load_policy_file`, declared in pyproject.toml), so::

    opt = l2l.load_optimizer("checkpoints/zo_rl_mnist.zip")         # zo_rl
    opt = load_zo_rl_lstm("checkpoints/zo_rl_mnist.zip", "checkpoints/zo_lstm_mnist.pt")

It is also an ordinary stable-baselines3 model: ``stable_baselines3.DDPG.load(path)`` (or
:class:`~agents.ddpg.ZORLAgent`'s ``load``, to keep Algorithm 2's warm-start state) returns a model
whose ``predict(obs, deterministic=True)`` is the action the ``zo_rl`` optimizer turns into its
direction (:func:`envs.mdp.action_to_direction`), for the observation :func:`envs.mdp.observation`
builds. The zip names this package's policy class, so ``agents`` must be importable; and loading
unpickles the zip's ``data`` (cloudpickle), which can run code: load only zips you trust.

- ``zo_rl`` (:class:`ZORL`): the environment's step as an optimizer. Each step asks the policy for a
  direction at x, queries f(x) and f(x + mu u) in one call (**2 queries**), and moves
  x <- project(x - eta (f(x + mu u) - f(x)) / mu * u) with the mu and eta it was trained with.
  With ``policy_prob`` P < 1, each step flips a coin and uses a standard Gaussian direction instead
  with chance 1 - P: a deterministic policy changes its direction little as x moves (consecutive
  directions are nearly parallel on both shipped tasks; docs/results/zo_rl.md), so on its own it
  searches along nearly one line. ``train.ddpg_policy`` chooses P on val and stores it in the zip;
  loading uses it.
- ``zo_rl_lstm`` (:class:`ZORLLSTM`): a trained ZO-LSTM whose first query direction of a step comes
  from the policy, scaled by the QueryRNN's std when the step samples from its covariance (the policy
  "in the pre-learning distribution", sec. 3.3); the other q - 1 stay Gaussian (**q + 1 queries**).
  The policy is used as trained on its own MDP, not retrained inside the ZO-LSTM. It proposes the
  first direction with the same chance P as in ``zo_rl`` (the zip's val choice), for the same reason:
  at every step (P = 1) the same direction recurs, which costs loss (the ZO-RL-LSTM table of
  docs/results/zo_rl.md). A guided policy's action a sets the mean of all q directions instead:
  s * (a + z_i), s the QueryRNN's std when the step samples from it.
- A policy **trained inside a ZO-LSTM** (``train.ddpg_policy --directions guided --zo-lstm CKPT``, sec.
  3.3 as written: the MDP's directions are s * (a + z_i) and its steps the UpdateRNN's) loads as that
  ZO-RL-LSTM: its zip names the ZO-LSTM, and :func:`load_zo_rl` returns the pair (:func:`policy_in_lstm`).
- ``zo_rl_untrained`` (:func:`load_zo_rl` with ``variant="untrained"``): the same architecture and MDP
  with freshly initialized networks: the control that shows what training bought.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

import l2l
from envs.mdp import action_to_direction, observation
from envs.spec import MDPSpec, check_mdp
from envs.step import estimate_step, finish_step
from l2l.common.paths import shipped_file
from l2l.estimators import Estimate, Objective
from l2l.learned.checkpoint import load_zo_lstm, shipped_checkpoint
from l2l.learned.zo_lstm import ZOLSTM
from l2l.loading import Reference, register_variants
from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.oracle import Oracle
from l2l.tasks.base import Task

if TYPE_CHECKING:  # imported lazily at run time: it pulls in stable-baselines3's DDPG stack
    from agents.ddpg import ZORLAgent

FORMAT = "l2l-zo-rl"
FORMAT_VERSION = 1
#: the task's shipped policy by name, alone and as the shipped ZO-LSTM's direction sampler (papers/003)
SHIPPED_POLICIES = {"zo_rl": "", "zo_rl_lstm": "lstm"}
#: variants of a policy zip: as trained, its untrained control, sampling for a ZO-LSTM, or that control
POLICY_VARIANTS = ("", "untrained", "lstm", "lstm_untrained")
VARIANTS = ("zo_rl", "untrained")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block with ``module`` in eval mode (batch norm on its running statistics), then restore."""
    was_training = module.training
    module.train(False)
    try:
        yield
    finally:
        module.train(was_training)


#: the MDP of a ``zo_rl`` optimizer built without one: single directions, mu = eta = 1e-4
DEFAULT_MDP = MDPSpec(q=1, mu=1e-4, eta=1e-4)


def check_policy_prob(policy_prob: float) -> None:
    """P, the chance that a step asks the policy, must be a probability."""
    if not 0 <= policy_prob <= 1:
        raise ValueError(f"policy_prob={policy_prob!r} must be in [0, 1] (a probability)")


@dataclass
class ZORL(ZOOptimizer):
    """ZO-SGD along the directions of a trained sampling policy (see the module docstring).

    Each step is the MDP's step (:mod:`envs.step`, which :class:`envs.zo_env.ZOEnv` takes too), with the
    policy's proposal or, with chance 1 - P, none.

    Args:
        policy: the stable-baselines3 TD3/DDPG policy whose actor proposes the directions.
        mdp: the MDP the policy was trained on, resolved (:class:`envs.spec.MDPSpec` with q, mu and eta
            set; a policy zip stores it, and a :class:`~envs.zo_env.ZOEnv` holds it as ``env.mdp``): its
            observation says what the policy sees (the estimate observations read the previous step's
            estimate, or the trend of the estimates, which :meth:`step` keeps in the state's slots), and
            its direction form how a step queries: ``single`` (one direction, 2 queries) or ``guided``
            (q directions a + z_i around the policy's action a at q + 1 queries; a step that does not ask
            the policy uses a = 0, a ZO-SGD step).
        policy_prob: P, the chance that a step queries along the policy's direction (else along a
            standard Gaussian one); 1 is papers/003's ZO-RL.
    """

    name = "zo_rl"

    policy: TD3Policy | None = field(default=None, repr=False, compare=False)
    mdp: MDPSpec = DEFAULT_MDP
    policy_prob: float = 1.0

    #: whether :meth:`propose` reads ``policy`` (subclasses that make up their directions say False)
    needs_policy: ClassVar[bool] = True
    #: task family -> shipped policy file (under ``checkpoints/``), as learned optimizers declare theirs
    shipped_files: ClassVar[dict[str, str]] = {
        "mnist_attack": "zo_rl_mnist.zip",
        "binary_classification": "zo_rl_binary.zip",
    }
    #: the command that trains one (named in messages about missing policies)
    train_command: ClassVar[str] = "python -m train.ddpg_policy"

    def __post_init__(self) -> None:
        check_mdp(self.mdp)
        if not self.mdp.resolved:
            raise ValueError(
                f"ZORL steps a resolved MDP (q, mu and eta set); got {self.mdp}: take it from a policy zip "
                "(agents.load_zo_rl) or an environment (ZOEnv(...).mdp)"
            )
        check_policy_prob(self.policy_prob)
        if self.policy is None and self.needs_policy:
            raise ValueError("ZORL needs a policy; load one with agents.load_zo_rl(path)")

    @property
    def observe(self) -> str:
        """What the policy sees (the MDP's observation)."""
        return self.mdp.observe

    def queries_per_step(self, dim: int) -> int:
        return self.mdp.queries_per_step()

    @property
    def evaluates_iterate(self) -> bool:
        return True

    def action(
        self, x: torch.Tensor, task: Task | None, estimate: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The policy's action [d] (a point of Box(-1, 1)^d) at iterate ``x`` of ``task``.

        ``estimate`` is the previous step's ZO estimate, which the estimate observations show (None:
        no step yet); the others ignore it.
        """
        if self.observe.startswith("image") and task is None:
            raise ValueError(f"a policy that observes {self.observe!r} needs the task (an oracle's .task)")
        obs = observation(task, x, self.observe, estimate)
        assert self.policy is not None
        with torch.no_grad(), eval_mode(self.policy.actor):
            action = self.policy.actor(torch.as_tensor(obs).reshape(1, -1))[0]
        return action.to(x.device)  # the policy runs where SB3 put it

    def direction(
        self, x: torch.Tensor, task: Task | None, estimate: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The policy's query direction [d] (norm sqrt(d)) at iterate ``x`` of ``task`` (:meth:`action`)."""
        return action_to_direction(self.action(x, task, estimate))

    def propose(self, state: ZOState, oracle: Oracle) -> torch.Tensor:
        """The direction [d] of a single step that asks the policy: :meth:`direction` at the iterate."""
        return self.direction(state.x, oracle.task, state.slots.get("estimate"))

    def guided_mean(self, state: ZOState, oracle: Oracle) -> torch.Tensor:
        """The mean a [d] of a guided step that asks the policy: its action at the iterate (a hook for
        synthetic policies, such as ``eval.policy_bound``'s)."""
        return self.action(state.x, oracle.task, state.slots.get("estimate"))

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        """The step's estimate (:func:`envs.step.estimate_step`): f(x) and the probes along the policy's
        proposal, or, with chance 1 - P, along a Gaussian direction (guided: around the zero mean)."""
        # The coin is drawn at every step, so P = 1 consumes the random stream as P < 1 does.
        use_policy = bool(torch.rand((), generator=state.rng, device=state.rng.device) < self.policy_prob)
        proposal = None
        if use_policy:
            guided = self.mdp.directions == "guided"
            proposal = self.guided_mean(state, oracle) if guided else self.propose(state, oracle)
        est, state.slots["mean"] = estimate_step(self.mdp, oracle, state.x, proposal, state.rng)
        return est

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        est = self.estimate(state, oracle)
        # the next iterate, and what the estimate observations show at the next step
        state.x, state.slots["estimate"] = finish_step(
            self.mdp, state.x, est, state.slots["mean"], state.slots.get("estimate"), oracle.project
        )
        state.fx, state.step = est.fx, state.step + 1
        return state

    def config(self) -> dict:
        mdp = self.mdp
        return {"mu": mdp.mu, "eta": mdp.eta, "observe": mdp.observe, "policy_prob": self.policy_prob,
                "directions": mdp.directions, "q": mdp.q}  # fmt: skip


@dataclass
class ZORLLSTM(ZOLSTM):
    """A ZO-LSTM whose first query direction per step comes from a ZO-RL policy (papers/003 sec. 3.3).

    Build one with :func:`load_zo_rl_lstm`. ``sampler`` (set after construction, not an option) is the
    :class:`ZORL` whose policy proposes the direction; setting it checks the pair with
    :func:`envs.spec.check_mdp` (the ZO-LSTM must draw its directions through ``sample_directions``, and
    the policy must not need the past estimates, which this step does not pass it).

    Args:
        policy_prob: P, the chance that a step's first direction comes from the policy (else it stays
            Gaussian); the other options are the ZO-LSTM's.
    """

    name = "zo_rl_lstm"

    policy_prob: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_policy_prob(self.policy_prob)
        self._sampler: ZORL | None = None

    @property
    def sampler(self) -> ZORL | None:
        """The ``zo_rl`` optimizer whose policy proposes the directions (None until set)."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler: ZORL | None) -> None:
        if sampler is not None:
            check_mdp(sampler.mdp, lstm=self)
        self._sampler = sampler

    def sample_directions(
        self, x: torch.Tensor, f: Objective, rng: torch.Generator, std: torch.Tensor | None
    ) -> torch.Tensor:
        # The q Gaussian directions come first and the coin after them, at every step, so each step
        # draws the ZO-LSTM's directions whatever P is and whether or not the policy replaces one.
        directions = super().sample_directions(x, f, rng, std)
        if self.sampler is None:
            raise ValueError("this ZORLLSTM has no sampler; build it with agents.load_zo_rl_lstm")
        if bool(torch.rand((), generator=rng, device=rng.device) < self.policy_prob):
            if self.sampler.mdp.directions == "guided":  # every direction around the action: s * (a + z_i)
                a = self.sampler.action(x, getattr(f, "task", None))
                return directions + (a if std is None else a * std)
            u = self.sampler.direction(x, getattr(f, "task", None))
            directions[0] = u if std is None else u * std
        return directions


def read_policy(path: str | os.PathLike) -> Any:
    """The :class:`~agents.ddpg.ZORLAgent` saved at ``path`` (networks only: a 1-slot replay buffer).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a stable-baselines3 zip, or not a ZO-RL policy of this format.
    """
    from agents.ddpg import ZORLAgent  # the agent module imports stable-baselines3's DDPG stack

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no ZO-RL policy at {str(path)!r}; train one with `python -m train.ddpg_policy --task <task>`"
        )
    if not zipfile.is_zipfile(path) or "data" not in _zip_names(path):
        raise ValueError(
            f"{str(path)!r} is not a stable-baselines3 model zip (corrupt, truncated, or another zip)"
        )
    try:
        agent = ZORLAgent.load(path, device="cpu", buffer_size=1)
    except Exception as err:
        raise ValueError(
            f"{str(path)!r} could not be loaded as a ZO-RL agent: {type(err).__name__}: {str(err)[:300]}"
        ) from err
    _check_info(path, getattr(agent, "zo_rl", None))
    agent.policy.set_training_mode(False)
    return agent


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _check_info(path: Path, info: Any) -> None:
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is a stable-baselines3 model but not a ZO-RL policy: it has no {FORMAT!r} "
            "description of its MDP (write policies with train.ddpg_policy or agents.attach_info)"
        )
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has ZO-RL format version {info.get('format_version')!r} (written by l2l "
            f"{info.get('version')!r}); this l2l ({l2l.__version__}) reads version {FORMAT_VERSION}"
        )


def attach_info(agent: Any, env: Any, train_config: dict | None = None, val: dict | None = None) -> None:
    """Store what a loaded policy needs (the MDP of ``env``, a :class:`~envs.zo_env.ZOEnv`) on ``agent``.

    ``agent.save`` then writes it into the zip (stable-baselines3 saves the agent's attributes).
    """
    agent.zo_rl = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": l2l.__version__,
        "env": env.describe(), "train_config": dict(train_config or {}), "val": dict(val or {}),
    }  # fmt: skip


def fresh_policy(policy: TD3Policy, seed: int = 0) -> TD3Policy:
    """A policy with ``policy``'s architecture and freshly initialized weights (from ``seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        other = type(policy)(**policy._get_constructor_parameters())
    other.set_training_mode(False)
    return other


def load_zo_rl(path: str | os.PathLike, variant: str = "zo_rl", **overrides: Any) -> ZORL | ZORLLSTM:
    """The ``zo_rl`` optimizer of the policy saved at ``path`` (or its untrained control); a policy
    trained inside a ZO-LSTM gives that ZO-RL-LSTM (:func:`zo_rl_from_agent`).

    Args:
        path: a policy zip written by ``train.ddpg_policy``.
        variant: ``zo_rl`` (as trained) or ``untrained`` (same architecture and MDP, fresh weights).
        **overrides: ``policy_prob`` or fields of :class:`envs.spec.MDPSpec` (``mu``, ``eta``,
            ``observe``, ...) to change (they default to the MDP's, and P and eta to the val choice
            stored in the zip, else 1 and the MDP's eta).
    """
    return zo_rl_from_agent(read_policy(path), variant, **overrides)


def zo_rl_from_agent(
    agent: ZORLAgent, variant: str = "zo_rl", in_lstm: bool = True, **overrides: Any
) -> ZORL | ZORLLSTM:
    """:func:`load_zo_rl` for an agent already read (``read_policy``), with the same arguments.

    A policy trained inside a ZO-LSTM (its MDP names ``zo_lstm``) comes back as that ZO-RL-LSTM
    (:func:`policy_in_lstm`), since stepping it as ``zo_rl`` is not what it learned; ``in_lstm=False``
    gives the bare policy as ``zo_rl`` anyway (the sampler inside another ZO-LSTM).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ZO-RL variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if in_lstm and agent.zo_rl["env"].get("zo_lstm"):
        fixed = sorted(set(overrides) - {"policy_prob"})
        if fixed:
            raise ValueError(
                f"{fixed} cannot change on a policy trained inside a ZO-LSTM (its MDP was that ZO-LSTM's); "
                "only policy_prob can"
            )
        return policy_in_lstm(agent, variant, overrides.get("policy_prob"))
    policy = agent.policy if variant == "zo_rl" else fresh_policy(agent.policy)
    policy_prob = overrides.pop("policy_prob", agent.zo_rl.get("policy_prob", 1.0))
    # the val choice of eta (train.ddpg_policy) replaces the MDP's; the overrides win over both
    mdp = dataclasses.replace(trained_mdp(agent), eta=agent.zo_rl.get("eta", agent.zo_rl["env"]["eta"]))
    optimizer = ZORL(policy=policy, mdp=dataclasses.replace(mdp, **overrides), policy_prob=policy_prob)
    if variant == "untrained":
        optimizer.name = "zo_rl_untrained"
    return optimizer


def load_zo_rl_lstm(
    policy_path: str | os.PathLike,
    lstm_path: str | os.PathLike,
    variant: str = "zo_rl",
    policy_prob: float | None = None,
    **overrides: Any,
) -> ZORLLSTM:
    """ZO-RL-LSTM: the ZO-LSTM at ``lstm_path``, its first direction from the policy at ``policy_path``.

    Args:
        policy_path: a policy zip written by ``train.ddpg_policy``.
        lstm_path: a ZO-LSTM checkpoint written by ``train.zo_lstm``.
        variant: ``zo_rl`` (the policy as trained) or ``untrained`` (fresh policy weights, the trained
            ZO-LSTM: the control that shows what the policy adds).
        policy_prob: P of :class:`ZORLLSTM`; None takes the val choice stored in the zip (else 1).
        **overrides: ZO-LSTM options to change (e.g. ``query_prob``), as in ``load_zo_lstm``.
    """
    lstm = load_zo_lstm(lstm_path, **overrides)
    sampler = zo_rl_from_agent(read_policy(policy_path), variant, in_lstm=False)
    assert isinstance(sampler, ZORL)
    combined = _with_sampler(lstm, sampler, sampler.policy_prob if policy_prob is None else policy_prob)
    if variant == "untrained":
        combined.name = "zo_rl_lstm_untrained"
    return combined


def policy_in_lstm(agent: ZORLAgent, variant: str = "zo_rl", policy_prob: float | None = None) -> ZORLLSTM:
    """The ZO-RL-LSTM of a policy trained inside a ZO-LSTM (``train.ddpg_policy --zo-lstm``).

    The ZO-LSTM is the one the MDP stepped inside (its path is in the zip); ``policy_prob`` None takes
    the val choice stored in the zip (else 1). ``untrained`` keeps that ZO-LSTM with fresh policy weights.
    """
    mdp = trained_mdp(agent)
    assert mdp.zo_lstm is not None, "policy_in_lstm reads a policy trained inside a ZO-LSTM"
    policy = agent.policy if variant == "zo_rl" else fresh_policy(agent.policy)
    prob = agent.zo_rl.get("policy_prob", 1.0) if policy_prob is None else policy_prob
    combined = _with_sampler(load_zo_lstm(mdp.zo_lstm), ZORL(policy=policy, mdp=mdp), prob)
    if variant == "untrained":
        combined.name = "zo_rl_lstm_untrained"
    return combined


def trained_mdp(agent: ZORLAgent) -> MDPSpec:
    """The MDP a read policy was trained on (its zip's :meth:`ZOEnv.describe`), checked."""
    return MDPSpec.from_describe(agent.zo_rl["env"])


def _with_sampler(lstm: ZOLSTM, sampler: ZORL, policy_prob: float) -> ZORLLSTM:
    """A :class:`ZORLLSTM` with ``lstm``'s options and networks, asking ``sampler`` with chance P."""
    combined = ZORLLSTM(**lstm.config(), policy_prob=policy_prob)
    combined.update_net, combined.query_net = lstm.update_net, lstm.query_net
    combined.sampler = sampler
    return combined


#: the shipped policy of each task family (``ZORL.shipped_files``)
SHIPPED = ZORL.shipped_files


def shipped_policy(task: str) -> Path:
    """The shipped ZO-RL policy trained on ``task`` (a KeyError names the others)."""
    return shipped_file("ZO-RL policy", ZORL.shipped_files, task, ZORL.train_command)


def load_policy_file(path: Path) -> ZORL | None:
    """The loader plugin behind ``l2l.load_optimizer`` (entry point ``l2l.loaders: zo_rl``).

    Returns None for a file that is not a stable-baselines3 zip, so that other plugins may try it; a
    stable-baselines3 zip that is not a valid ZO-RL policy raises the error that says why.
    """
    if not zipfile.is_zipfile(path) or "data" not in _zip_names(path):
        return None
    return load_zo_rl(path)


class PolicyVariants:
    """The variant grammar of a policy zip in an optimizer list (:func:`l2l.loading.parse_reference`).

    ``label=policy.zip`` is ``zo_rl``; ``#untrained`` its control; ``#lstm[=<ZO-LSTM .pt>]`` the policy
    as that ZO-LSTM's sampler (without a file, the task's shipped ZO-LSTM); ``#lstm_untrained[=<.pt>]``
    the same ZO-LSTM with an untrained policy. The bare names of :data:`SHIPPED_POLICIES` stand for the
    task's shipped policy. Registered with l2l when this module is imported (the ``l2l.loaders`` entry
    point imports it), so l2l never names this package.
    """

    shipped = SHIPPED_POLICIES

    def claims(self, path: str) -> bool:
        """A stable-baselines3 zip; a file that does not exist yet, by its ``.zip`` ending."""
        file = Path(path)
        if not file.is_file():
            return path.endswith(".zip")
        return zipfile.is_zipfile(file) and "data" in _zip_names(file)

    def shipped_path(self, task: str) -> str:
        """The task's shipped policy (a KeyError names the tasks that have one)."""
        return str(shipped_policy(task))

    def resolve(self, ref: Reference, task: str | None) -> Any:
        """The factory of ``ref`` (``label=policy.zip[#variant]``).

        Raises:
            ValueError: an unknown variant, or ``#lstm`` without a file and without a task.
        """
        path, variant = str(ref.path), ref.variant
        kind, _, lstm = variant.partition("=")
        if kind not in POLICY_VARIANTS or (lstm and not kind.startswith("lstm")):
            raise ValueError(
                f"unknown ZO-RL variant in {ref.label}={path}#{variant}; write {path}, {path}#untrained, "
                f"{path}#lstm, {path}#lstm_untrained, or either lstm form with =<zo_lstm checkpoint .pt>"
            )
        if kind.startswith("lstm") and not lstm:
            if task is None:
                raise ValueError(
                    f"{ref.label}={path}#lstm needs a task to find its shipped ZO-LSTM; name one with "
                    "#lstm=<.pt>"
                )
            lstm = str(shipped_checkpoint(task))
        return functools.partial(_load_policy_variant, path, kind, lstm)

    def control(self, variant: str) -> str | None:
        """The variant of a policy's untrained control (the same ZO-LSTM, if any), or None for a control."""
        kind, eq, lstm = variant.partition("=")
        if kind not in ("", "lstm"):
            return None
        return (f"{kind}_untrained" if kind else "untrained") + eq + lstm


register_variants("zo_rl", PolicyVariants())


def _load_policy_variant(path: str, kind: str, lstm: str) -> ZOOptimizer:
    """A policy zip as ``zo_rl`` or as the sampler of the ZO-LSTM at ``lstm`` (or their controls)."""
    variant = "untrained" if kind.endswith("untrained") else "zo_rl"
    if kind.startswith("lstm"):
        return load_zo_rl_lstm(path, lstm, variant)
    return load_zo_rl(path, variant)
