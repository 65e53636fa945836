"""The hyperparameter search space of every registered method, and its fingerprint.

``python -m eval.tune`` searches these spaces on val; ``tuned.json`` records, with each tuned value,
the fingerprint of the space it was chosen from, so :mod:`l2l.optimizers.core.tuned` can tell a value
tuned under today's space from one tuned under an older one. The spaces live here, not in ``eval``,
because ``l2l`` never imports ``eval``, and ``make_optimizer`` needs the fingerprint.

The protocol of papers/002 sec. 4 for the gradient-estimate methods: the learning rate is delta/d;
delta is tuned on the log grid {0.01, 0.1, 1, 10, 100, 1000}, then refined on a linear range around
the best value; ZO-Adam's betas are tuned over {0.9, 0.99} x {0.99, 0.996, 0.999}. The smoothing radius
mu matters as much as delta on float32 attacks, so it is tuned too (``eval.tune --mu-grid``). Other
methods search the grids of their papers (:data:`SEARCH_SPACES`). The search is coordinatewise: each
stage tries its values at the best point so far.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import product

from l2l.common.config import parse_float_list
from l2l.optimizers.core.registry import parameter_names

LOG_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
LINEAR_FACTORS = (0.25, 0.5, 0.75, 1.25, 1.5, 2.0, 3.0, 5.0)
BETA_PAIRS = tuple((b1, b2) for b1 in (0.9, 0.99) for b2 in (0.99, 0.996, 0.999))
#: the mu values ``eval.tune`` tries by default where a space has :data:`MU_STAGE`
DEFAULT_MU_GRID = "1e-4,3e-4,1e-3,3e-3,1e-2"
#: hex digits of a space's fingerprint: short enough to read, long enough that two spaces never share one
FINGERPRINT_DIGITS = 12


@dataclass(frozen=True)
class Stage:
    """One coordinate of the search: try each of ``values`` for ``keys`` at the best point so far.

    Attributes:
        keys: the parameter names set together (e.g. ``("beta1", "beta2")``).
        values: one tuple per candidate, aligned with ``keys``; the string ``"mu_grid"`` stands for the
            command line's ``--mu-grid``.
        relative: the values are factors of the current value (a linear refinement).
    """

    keys: tuple[str, ...]
    values: tuple[tuple, ...] | str
    relative: bool = False

    def rows(self, mu_grid: str = DEFAULT_MU_GRID) -> list[tuple]:
        """The candidate rows of this stage, with ``"mu_grid"`` read from ``mu_grid`` (comma-separated)."""
        if self.values == "mu_grid":
            return [(mu,) for mu in parse_float_list(mu_grid, "mu_grid")]
        return list(self.values)


def grid(key: str, values: tuple | list) -> Stage:
    """A stage trying each of ``values`` for the one parameter ``key``."""
    return Stage((key,), tuple((v,) for v in values))


def refine(key: str) -> Stage:
    """A linear refinement of ``key``: the current value times 1 and each of :data:`LINEAR_FACTORS`."""
    return Stage((key,), tuple((v,) for v in (1.0, *LINEAR_FACTORS)), relative=True)


MU_STAGE = Stage(("mu",), "mu_grid")
BETAS_STAGE = Stage(("beta1", "beta2"), BETA_PAIRS)
EAD_BETA = grid("beta", (0.0, 1e-4, 1e-3, 1e-2))  # papers/001 Table 5 spans 1e-5 .. 1e-2
#: one candidate that changes nothing: a method with no hyperparameters (SignHunter) scores its defaults once
NO_TUNING = Stage((), ((),))
#: the grids of the papers (papers/001 for ZOO and EAD, papers/000 for NGD, papers/004 for NES/SPSA);
#: any other delta-based method gets :func:`default_space`
SEARCH_SPACES: dict[str, list[Stage]] = {
    "zoo_adam": [grid("lr", (1e-3, 2e-3, 1e-2, 3e-2, 0.1)), grid("h", (1e-4, 1e-3, 1e-2)), BETAS_STAGE,
                 refine("lr")],
    "zoo_newton": [grid("lr", (0.01, 0.1, 1.0, 10.0)), grid("h", (1e-4, 1e-3, 1e-2)),
                   grid("min_hessian", (0.1, 1.0)), refine("lr")],
    # papers/000's grids (gamma 1e-3 .. 1, mu 0.1 .. 1) keep the rank-one Fisher in charge; float32 MNIST
    # attacks want it damped hard too (gamma >> ||s||^2, where the step tends to ZO-SGD's delta/(d gamma)
    # g), so gamma spans 1e-3 .. 1e3, first jointly with delta (the step scales with delta/gamma), and mu
    # goes down to 1e-4, as for the other delta-based methods
    "zo_ngd": [Stage(("delta", "gamma"), tuple(product((1.0, 10.0, 100.0, 1000.0, 1e4), (0.01, 1.0, 100.0)))),
               grid("gamma", (1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)),
               grid("mu", (1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0)), refine("delta")],
    "fo_ngd": [grid("delta", (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)), grid("gamma", (0.01, 0.1, 1.0)),
               refine("delta")],
    "nes": [grid("delta", (6.15, 15.0, 25.0, 40.0)), grid("mu", (1e-3, 0.01, 0.03, 0.1)), refine("delta")],
    "spsa": [grid("delta", (6.15, 15.0, 25.0, 40.0)), grid("mu", tuple(k / 255 for k in (1, 2, 3, 5))),
             refine("delta")],
    "zo_ead": [grid("delta", LOG_GRID), EAD_BETA, MU_STAGE, refine("delta")],
    "fo_ead": [grid("delta", LOG_GRID), EAD_BETA, refine("delta")],
    # popsize: pycma's default 4 + floor(3 ln d) (17 at d = 100, 14 at d = 31), then about 2x and 4x it;
    # tune it under --budget: at equal --steps a larger population simply spends more queries
    "cma_es": [grid("sigma0", (0.01, 0.03, 0.1, 0.3, 1.0)), grid("popsize", (None, 32, 64))],
    # score-based attacks (docs/references.md): Square's p_init spans the
    # paper's 0.05 (ImageNet) to 0.8 (MNIST); Parsimonious's block side brackets the paper's ~1/9 image
    "square": [grid("p_init", (0.05, 0.1, 0.3, 0.5, 0.8))],
    "signhunter": [NO_TUNING],
    "parsimonious": [grid("block_size", (2, 4, 7, 14))],
    # the transfer starts keep their PGD settings; the search after them is tuned as the plain attack's
    "transfer_signhunter": [NO_TUNING],
    "transfer_square": [grid("p_init", (0.05, 0.1, 0.3, 0.5, 0.8))],
    # P-RGF (Cheng et al. 2019): the step around the code's eps / 10, then q around its 50
    "prgf": [grid("step_fraction", (0.025, 0.05, 0.1, 0.2, 0.4)), grid("q", (10, 20, 50, 100))],
    # Bandits-TD (Ilyas et al. 2019): grids around the published L-inf and L2 settings (image_lr 0.01 /
    # 0.5, online_lr 100 / 0.1, fd_eta 0.1 / 0.01, tile 6 px on 299 px); one grid serves both norms, and
    # no relative refinement follows, since the untuned fields are None (the norm's MNIST defaults)
    "bandits_td": [grid("image_lr", (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)),
                   grid("online_lr", (0.1, 1.0, 10.0, 100.0)), grid("fd_eta", (0.01, 0.03, 0.1, 0.3)),
                   grid("tile", (1, 2, 4, 7))],
    # the order attack's batch searches (papers/004 Tables 9-10, Fashion-MNIST, eps 4/255); Rand has none
    "rand": [NO_TUNING],
    "beta": [grid("lr", (0.0, 1.5, 3.0, 4.5, 6.0))],
    "pso": [grid("inertia", (0.8, 1.0, 1.1, 1.2, 1.4)), grid("phi_p", (0.37, 0.47, 0.57, 0.67, 0.77)),
            grid("phi_g", (0.24, 0.34, 0.44, 0.54, 0.64))],
    # SimBA (Guo et al. 2019): eps around the published 0.2, both bases
    "simba": [grid("step_size", (0.1, 0.2, 0.4, 0.8, 1.6)), grid("basis", ("dct", "pixel")),
              refine("step_size")],
    # ZO-Trend (our design): the mean's strength and the trend's memory, around eval.policy_bound's trend rows
    "zo_trend": [grid("delta", LOG_GRID), grid("strength", (0.25, 0.5, 1.0)),
                 grid("decay", (0.9, 0.97, 0.99, 0.995)), MU_STAGE, refine("delta")],
}  # fmt: skip


def default_space(name: str) -> list[Stage]:
    """delta on the log grid, Adam betas if it has them, mu if it has it, then a linear delta refinement."""
    names = parameter_names(name)
    if "delta" not in names:
        raise ValueError(f"no search space for {name!r}: add it to {__name__}.SEARCH_SPACES")
    stages = [grid("delta", LOG_GRID)]
    stages += [BETAS_STAGE] if "beta1" in names else []
    stages += [MU_STAGE] if "mu" in names else []
    return [*stages, refine("delta")]


def search_space(name: str) -> list[Stage]:
    """The stages ``eval.tune`` searches for registered method ``name``, in order."""
    return SEARCH_SPACES.get(name) or default_space(name)


def space_fingerprint(name: str, mu_grid: str | None = None) -> str:
    """A short hash of the canonical JSON of ``name``'s search space, every stage's rows spelled out.

    Two tunings share a fingerprint exactly when they searched the same stages, in the same order, over
    the same values (the linear refinement's factors included), so a value tuned under a grid that has
    since changed is told apart from a current one.

    Args:
        name: a registered method.
        mu_grid: the ``--mu-grid`` the tuning used (None: :data:`DEFAULT_MU_GRID`); it matters only to
            spaces with :data:`MU_STAGE`, so a space without one has a single fingerprint.
    """
    mu_grid = DEFAULT_MU_GRID if mu_grid is None else mu_grid
    stages = [
        {"keys": list(st.keys), "rows": [list(row) for row in st.rows(mu_grid)], "relative": st.relative}
        for st in search_space(name)
    ]
    canonical = json.dumps(stages, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_DIGITS]
