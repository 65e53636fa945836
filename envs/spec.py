"""What defines the ZO-RL MDP's step, and the one place that decides which combinations are valid.

:class:`MDPSpec` groups the settings that say how an action becomes a ZO step and what the policy sees
(observation, direction form, q, mu, eta, and the ZO-LSTM the MDP may step inside). The environment
(:class:`envs.zo_env.ZOEnv`), the ``zo_rl`` optimizer (:class:`agents.zo_rl.ZORL`), the ZO-RL-LSTM
(:class:`agents.zo_rl.ZORLLSTM`), ``train.ddpg_policy`` and the policy loader all take this one object,
and all of them validate it through :func:`check_mdp`, so a combination is refused (or accepted) the
same way wherever it enters.

A spec may leave q, mu and eta unset (None): :meth:`MDPSpec.resolve` fills them from the task family
(:func:`default_mu_eta`, :func:`default_q`) or from the ZO-LSTM the MDP steps inside. An environment
stores the resolved spec, and a policy zip stores it (:meth:`ZOEnv.describe`), so the optimizer that
runs a trained policy steps exactly the MDP it was trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from envs.mdp import ESTIMATE_MODES, OBSERVE_MODES, TREND_MODES, Observe
from l2l.optimizers import tuned_params
from l2l.tasks.base import Task

Directions = Literal["single", "guided"]
#: how an action becomes a step's query directions: one direction (the first build), or the paper's q
#: directions pi(x) + N(0, I) (papers/003 sec. 3; :func:`envs.step.guided_directions`)
DIRECTION_MODES: tuple[str, ...] = get_args(Directions)
#: the ZO-LSTM direction modes a policy can sample for: those that draw their q directions through
#: ``ZOLSTM.sample_directions`` (``trend`` and ``guided_es`` draw their own and would ignore the policy)
HOST_DIRECTIONS: tuple[str, ...] = ("query", "gaussian")
#: the ZO-LSTM direction mode an MDP can step inside: the environment scales its directions by the
#: QueryRNN's std, so the ZO-LSTM must have one
INSIDE_DIRECTIONS: tuple[str, ...] = ("query",)

#: smoothing radius of a family with no tuned ZO-SGD mu (1e-4 suits float32 attacks)
FALLBACK_MU = 1e-4
#: ZO-SGD's delta and q where a family has none tuned (eta = 1 / (20 d))
FALLBACK_DELTA, FALLBACK_Q = 1.0, 20
#: families whose MDP has its own (mu, eta), which win over the tuned ZO-SGD values. The order attack's
#: loss, -tau_S, is piecewise constant: the fallback mu = 1e-4 almost never changes the ranking, so the
#: iterate would never move; mu = 4/255 (the ball radius) and eta = 1e-4 come from a short scan with
#: random actions (see :mod:`envs`)
FAMILY_MDP: dict[str, tuple[float, float]] = {"fashion_order_attack": (4 / 255, 1e-4)}


class ZOLSTMFacts(Protocol):
    """What the spec reads of a ZO-LSTM (any :class:`l2l.learned.zo_lstm.ZOLSTM` has these)."""

    directions: str
    q: int
    mu: float


@dataclass(frozen=True)
class MDPSpec:
    """How an action becomes a ZO step, and what the policy observes (module docstring).

    Args:
        observe: what the policy sees, one of :data:`envs.mdp.OBSERVE_MODES` (the iterate, the attacked
            image, optionally the normalized perturbation, and the last estimate or the trend of the
            estimates as a last channel; :mod:`envs.mdp`).
        directions: ``single`` (the action is one query direction, 2 queries per step; the first build)
            or ``guided`` (papers/003 sec. 3: the action a is the mean of the step's q directions
            a + z_i, z_i ~ N(0, I), at q + 1 queries; :func:`envs.step.guided_directions`).
        q: directions per guided step (None: the family's tuned ZO-SGD q, or the ZO-LSTM's); a resolved
            single-direction spec has q = 1.
        mu: finite-difference radius (None: the family's default, :func:`default_mu_eta`, or the
            ZO-LSTM's).
        eta: learning rate of a step (None: the family's default, :func:`default_mu_eta`); unused inside
            a ZO-LSTM, whose UpdateRNN takes the step.
        zo_lstm: a ZO-LSTM checkpoint the MDP steps inside (papers/003 sec. 3.3's ZO-RL-LSTM; guided
            only): the q directions become s * (a + z_i), s the trained QueryRNN's std, and its trained
            UpdateRNN turns the estimate into the step; q and mu are the ZO-LSTM's.
    """

    observe: Observe = "iterate"
    directions: Directions = "single"
    q: int | None = None
    mu: float | None = None
    eta: float | None = None
    zo_lstm: str | None = None

    def __post_init__(self) -> None:
        check_mdp(self)

    @property
    def resolved(self) -> bool:
        """Whether q, mu and eta are all set (what an optimizer needs to step)."""
        return None not in (self.q, self.mu, self.eta)

    def resolve(self, family: str, dim: int, lstm: ZOLSTMFacts | None = None) -> MDPSpec:
        """This spec with q, mu and eta filled in for a d = ``dim`` task of ``family``.

        ``lstm`` is the loaded ZO-LSTM of ``zo_lstm`` (its q, and its mu unless mu is set), already
        checked against this spec by :func:`check_mdp`.
        """
        q, mu = self.q, self.mu
        if lstm is not None:
            q, mu = lstm.q, lstm.mu if mu is None else mu
        default_mu, default_eta = default_mu_eta(family, dim, self.directions)
        return dataclasses.replace(
            self,
            q=(default_q(family) if q is None else int(q)) if self.directions == "guided" else 1,
            mu=default_mu if mu is None else float(mu),
            eta=default_eta if self.eta is None else float(self.eta),
        )

    def queries_per_step(self) -> int:
        """Queries of an optimizer step along this MDP: f(x) and the probes (q + 1 guided, else 2)."""
        return (self.q or 1) + 1 if self.directions == "guided" else 2

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (the keys :meth:`ZOEnv.describe` stores them under)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_describe(cls, env: dict[str, Any]) -> MDPSpec:
        """The spec a policy zip stores (:meth:`ZOEnv.describe`): the one place that reads old zips.

        Zips written before the guided form and the ZO-LSTM option have neither key: single, q = 1.
        """
        return cls(
            observe=env["observe"], directions=env.get("directions", "single"), q=env.get("q", 1),
            mu=env["mu"], eta=env["eta"], zo_lstm=env.get("zo_lstm"),
        )  # fmt: skip


def check_mdp(spec: MDPSpec, task: Task | None = None, lstm: ZOLSTMFacts | None = None) -> MDPSpec:
    """Refuse an invalid (observe, directions, ZO-LSTM) combination, naming the bad value and the fix.

    Every entry point calls this: :class:`MDPSpec` itself (so the task-free rules run whenever a spec is
    made), the environment (with its task), the ``zo_rl`` optimizer, the ZO-RL-LSTM (with the ZO-LSTM
    its policy samples for), and the loaders through them.

    Args:
        spec: the combination.
        task: the task instance, where known: the image observations need one that perturbs an image.
        lstm: the ZO-LSTM involved, where known: the one the MDP steps inside (``spec.zo_lstm`` set; it
            must have a QueryRNN and sets q), or one whose directions the policy samples (it must draw
            them through ``sample_directions``).

    Returns:
        ``spec``, unchanged.
    """
    if spec.observe not in OBSERVE_MODES:
        raise ValueError(f"observe={spec.observe!r} must be one of {', '.join(OBSERVE_MODES)}")
    if spec.directions not in DIRECTION_MODES:
        raise ValueError(f"directions={spec.directions!r} must be one of {', '.join(DIRECTION_MODES)}")
    if spec.q is not None and (isinstance(spec.q, bool) or not isinstance(spec.q, int) or spec.q < 1):
        raise ValueError(f"q={spec.q!r} must be an integer >= 1 (query directions per guided step)")
    if spec.mu is not None and not spec.mu > 0:
        raise ValueError(f"mu={spec.mu!r} must be > 0 (the finite-difference smoothing radius)")
    if spec.eta is not None and not spec.eta > 0:
        raise ValueError(f"eta={spec.eta!r} must be > 0 (the learning rate of a step)")
    if spec.observe in TREND_MODES and spec.directions != "guided":
        raise ValueError(
            f"observe={spec.observe!r} follows the noise of guided steps: "
            "use directions='guided' (--directions guided)"
        )
    if spec.zo_lstm and spec.directions != "guided":
        raise ValueError(
            f"zo_lstm={spec.zo_lstm!r} steps the guided form's directions; pass directions='guided' "
            "(--directions guided)"
        )
    if (spec.zo_lstm or lstm is not None) and spec.observe in ESTIMATE_MODES:
        raise ValueError(
            f"observe={spec.observe!r} shows the policy the past ZO estimates, which a ZO-LSTM's step does "
            "not pass it: use observe='iterate' or 'image' with a ZO-LSTM (--zo-lstm, or a policy#lstm item)"
        )
    if task is not None and spec.observe.startswith("image") and not task.perturbs_image:
        raise ValueError(
            f"observe={spec.observe!r} needs a task that perturbs an image (Task.perturbs_image, with an "
            f"adversarial(X) method); {type(task).__name__} is none: use observe='iterate'"
        )
    if lstm is not None:
        _check_lstm(spec, lstm)
    return spec


def _check_lstm(spec: MDPSpec, lstm: ZOLSTMFacts) -> None:
    """The ZO-LSTM rules of :func:`check_mdp`: inside one (``spec.zo_lstm``), or sampling for one."""
    if spec.zo_lstm:
        if lstm.directions not in INSIDE_DIRECTIONS or (spec.q is not None and int(spec.q) != lstm.q):
            raise ValueError(
                f"zo_lstm={spec.zo_lstm!r} must sample along its QueryRNN (directions 'query', it has "
                f"{lstm.directions!r}) and sets q itself (q={lstm.q}; leave q unset)"
            )
    elif lstm.directions not in HOST_DIRECTIONS:
        raise ValueError(
            f"a ZO-LSTM with directions={lstm.directions!r} draws its own directions and would ignore the "
            f"policy; a policy samples only for one with directions {' or '.join(HOST_DIRECTIONS)}"
        )


def default_mu_eta(family: str, dim: int, directions: str = "single") -> tuple[float, float]:
    """Default (mu, eta) of a family: its own MDP values (:data:`FAMILY_MDP`), else its tuned ZO-SGD mu
    and its tuned ZO-SGD learning rate divided by q for one-direction steps (``directions="single"``),
    undivided for guided steps (q directions, as ZO-SGD's own).

    Why divide by q: a q-direction ZO-SGD step has E||g||^2 ~ (d + q)/q ||grad||^2, a one-direction step of
    norm sqrt(d) has d ||grad||^2 whether the direction is random or aligned with the gradient, so the
    stable learning rate shrinks by about q; a scan of that multiple on mnist_attack and
    binary_classification agrees (docs/results/zo_rl.md, "ZO-RL step size"). Families without tuned values get
    mu = 1e-4, eta = 1/(20 d).
    """
    if family in FAMILY_MDP:
        return FAMILY_MDP[family]
    params = tuned_params("zo_sgd", family)
    delta, q = float(params.get("delta", FALLBACK_DELTA)), int(params.get("q", FALLBACK_Q))
    return float(params.get("mu", FALLBACK_MU)), delta / (dim * (q if directions == "single" else 1))


def default_q(family: str) -> int:
    """The query directions of a guided step: the family's tuned ZO-SGD q (20 where none is tuned)."""
    return int(tuned_params("zo_sgd", family).get("q", FALLBACK_Q))
