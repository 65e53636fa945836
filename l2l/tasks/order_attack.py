"""The black-box order attack on a deep ranking model (papers/004): the ``fashion_order_attack`` family.

An instance is a query image q from the retrieval database D (the 10,000 Fashion-MNIST test images),
its top-k candidates C = (c_1, ..., c_k) in the clean query's ranking, and a random target
permutation p (0-based here: the attacker wants c_{p_0} ranked first, then c_{p_1}, ...). The variable
is the flattened perturbation r (x0 = 0) with ||r||_inf <= eps/255 and q + r in [0, 1].

- **Black box.** The ranking system returns only the ordered ids of the top-N database items for the
  perturbed query (:meth:`OrderAttackTask.retrieve`); N = None is papers/004's N = inf. The query's
  own database entry is left out of its results (it would always rank first for the clean query), so
  the clean candidates hold ranks 0..k-1 and the clean mean rank is (k-1)/2, as in papers/004 Table 3
  ("None": mR 2.0 for k = 5).
- **Loss** (what the oracle returns): -tau_S, papers/004 Alg. 1 (:func:`tau_s`). It is
  piecewise constant; :meth:`OrderAttackTask.differentiable_loss` is the white-box surrogate of
  papers/004 eq. 4, L_ReO + xi * L_QA+, for the PGD reference and meta-training.
- **Success**: tau_S >= 0.99, papers/004's early stop (with k(k-1)/2 pairs it means tau_S = 1).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from l2l.tasks.attack import project_linf_box
from l2l.tasks.base import NormBall, Task, TaskFamily, check_rows, split_counts
from l2l.tasks.registry import register_family
from l2l.tasks.seeds import instance_seed

#: papers/004's options: k in {5, 10, 25}, N in {inf, 50, k}, eps in {2, 4, 8, 16} / 255
PAPER_KS = (5, 10, 25)
PAPER_EPS = (2.0, 4.0, 8.0, 16.0)
SUCCESS_TAU = 0.99
DEFAULT_SIZES = (200, 100, 200)
SPLIT_SEED = 12
#: xi of papers/004 eq. 4 on Fashion-MNIST (sec. 3: 10^1)
DEFAULT_XI = 10.0


def tau_s(ranks: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """papers/004 Alg. 1, the short-range ranking correlation tau_S of each row: [B, k] -> [B].

    Args:
        ranks: R_X(c_i), the 0-based position of candidate c_i in the returned top-N list, or -1 where
            c_i is not in it.
        perm: the target permutation, 0-based: c_{perm[m]} should hold target rank m.

    A pair (i, j) scores -1 when c_i or c_j is out of range, else +1 if the target ranks and the
    returned ranks order it the same way (concordant) and -1 otherwise (discordant; ranks are
    distinct, so there are no ties). tau_S is the mean over the k(k-1)/2 pairs; with every candidate
    returned (N = inf) it is Kendall's tau between the target and the returned order.
    """
    k = ranks.shape[-1]
    if perm.shape != (k,) or k < 2:
        raise ValueError(f"perm has shape {tuple(perm.shape)}; expected [{k}] with k >= 2 candidates")
    target = torch.empty_like(perm)
    target[perm] = torch.arange(k, device=perm.device)
    present = ranks >= 0
    agree = torch.sign(target[:, None] - target[None, :]) * torch.sign(ranks[:, :, None] - ranks[:, None, :])
    both = present[:, :, None] & present[:, None, :]
    scores = torch.where(both, agree, torch.full_like(agree, -1))
    lower = torch.tril(torch.ones(k, k, dtype=torch.bool, device=ranks.device), diagonal=-1)
    return scores[:, lower].sum(dim=1).float() / (k * (k - 1) / 2)


def ranks_in(retrieved: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Position of each candidate in each returned id list ([B, N] x [k] -> [B, k]; -1 if absent).

    Args:
        retrieved: ordered database ids the black box returned for each row.
        candidates: the candidate ids.
    """
    match = retrieved[:, :, None] == candidates[None, None, :]
    found = match.any(dim=1)
    return torch.where(found, match.int().argmax(dim=1), torch.full_like(candidates, -1).expand_as(found))


class OrderAttackTask(Task):
    """One order attack: make the ranking model list the candidates in the target order.

    Args:
        model: embedding model, images [B, 1, 28, 28] -> unit-norm embeddings [B, e]; eval mode.
        database: unit-norm embeddings [M, e] of the retrieval database (the clean images').
        query_id: the query's row in ``database`` (left out of its own results).
        image: the clean query image [1, 28, 28] in [0, 1].
        k: number of candidates (the clean query's top k).
        N: visible range, the length of the returned list (None: papers/004's N = inf).
        eps: L-inf radius in units of 1/255 (papers/004: 2, 4, 8, 16).
        perm: the target permutation of range(k), 0-based.
        xi: weight of the semantics-preserving term in the surrogate (papers/004 eq. 4).
        family: registry name of the family.
    """

    reports_best_seen = True  # papers/004 reports the best sample a method has seen within Q
    perturbs_image = True  # image and adversarial(X): image observations (envs.mdp) work here too

    def __init__(
        self,
        model: nn.Module,
        database: torch.Tensor,
        query_id: int,
        image: torch.Tensor,
        k: int,
        N: int | None,
        eps: float,
        perm: torch.Tensor,
        xi: float = DEFAULT_XI,
        family: str = "fashion_order_attack",
    ):
        check_options(k, N, eps, len(database))
        self.model, self.database = model.eval(), database
        self.query_id, self.image = int(query_id), image.detach().float()
        self.k, self.N, self.eps, self.xi, self.family = k, N, float(eps), float(xi), family
        self.perm = perm.long()
        if sorted(self.perm.tolist()) != list(range(k)):
            raise ValueError(f"perm={self.perm.tolist()} must be a permutation of 0..{k - 1}")
        with torch.no_grad():
            clean = self._distances(self.image.unsqueeze(0))[0]
        self.candidates = clean.topk(k, largest=False).indices
        # the complement of C and q: the items the semantics-preserving term keeps behind C
        others = torch.ones(len(database), dtype=torch.bool, device=database.device)
        others[self.candidates] = False
        others[self.query_id] = False
        self.others = torch.nonzero(others).flatten()

    @property
    def dim(self) -> int:
        return self.image.numel()

    def x0(self) -> torch.Tensor:
        return torch.zeros(self.dim, device=self.image.device)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape)

    @property
    def ball(self) -> NormBall:
        return NormBall("linf", self.eps / 255)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp into the L-inf ball of eps/255 and the image box (the exact projection)."""
        return project_linf_box(x, self.image.flatten(), self.eps / 255)

    def adversarial(self, X: torch.Tensor) -> torch.Tensor:
        """The perturbed queries ``clamp(q + r, 0, 1)`` for rows ``X`` [B, d] -> [B, 1, 28, 28]."""
        X = check_rows(X, self.dim)
        return (self.image.unsqueeze(0) + X.view(-1, *self.image.shape)).clamp(0.0, 1.0)

    def _distances(self, images: torch.Tensor) -> torch.Tensor:
        """Cosine distance of each query image to every database item, [B, M]; the query's own entry inf."""
        dist = 1.0 - self.model(images) @ self.database.T
        dist[:, self.query_id] = float("inf")
        return dist

    def retrieve(self, X: torch.Tensor) -> torch.Tensor:
        """The black box's answer: the ordered top-N database ids for each perturbed query, [B, N].

        With N = None, the whole ranking (every database item but the query itself).
        """
        with torch.no_grad():
            dist = self._distances(self.adversarial(X))
        n = dist.shape[1] - 1 if self.N is None else self.N
        return dist.topk(n, dim=1, largest=False).indices

    def candidate_ranks(self, X: torch.Tensor) -> torch.Tensor:
        """The full-ranking position of each candidate for each row, [B, k] (0 = nearest).

        The number of database items strictly nearer than the candidate: the candidate's position in
        :meth:`retrieve`'s list (distances tie with probability zero), computed without sorting.
        """
        with torch.no_grad():
            dist = self._distances(self.adversarial(X))
        own = dist[:, self.candidates]
        return (dist[:, None, :] < own[:, :, None]).sum(dim=2)

    def tau_s(self, X: torch.Tensor) -> torch.Tensor:
        """tau_S of each row (papers/004 Alg. 1) from the black box's top-N answer, [B]."""
        ranks = self.candidate_ranks(X)
        if self.N is not None:
            ranks = torch.where(ranks < self.N, ranks, torch.full_like(ranks, -1))
        return tau_s(ranks, self.perm)

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """-tau_S of each row: what the black box's answer reveals (no gradient flows through it)."""
        return -self.tau_s(X)

    def success(self, X: torch.Tensor) -> torch.Tensor:
        return self.tau_s(X) >= SUCCESS_TAU

    def loss_and_success(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tau = self.tau_s(X)
        return -tau, tau >= SUCCESS_TAU

    def differentiable_loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """The white-box surrogate of papers/004 eq. 4: L_ReO + xi * L_QA+, [B, d] -> [B].

        L_ReO (eq. 1) = sum_{i<j} [f(q, c_{p_i}) - f(q, c_{p_j})]_+ with no margin, as eq. 1 has none.
        L_QA+ is Zhou et al. (2020)'s semantics-preserving term as papers/004 describes it, "keep C
        ranked ahead of other candidates": sum over c in C and over every other database item x of
        [f(q, c) - f(q, x)]_+ (this project's reading; the paper gives no formula). f is the cosine
        distance.
        """
        dist = self._distances(self.adversarial(X))
        own = dist[:, self.candidates]
        ordered = own[:, self.perm]
        pairs = torch.triu(torch.ones(self.k, self.k, dtype=torch.bool, device=X.device), diagonal=1)
        reo = F.relu(ordered[:, :, None] - ordered[:, None, :])[:, pairs].sum(dim=1)
        qa = F.relu(own[:, :, None] - dist[:, None, self.others]).sum(dim=(1, 2))
        return reo + self.xi * qa

    def metrics(self, x: torch.Tensor) -> dict[str, float]:
        """tau_S and the mean full-ranking rank of the candidates (papers/004's mR) at the point ``x`` [d]."""
        X = x.unsqueeze(0)
        return {"tau_s": float(self.tau_s(X)[0]), "mean_rank": float(self.candidate_ranks(X).float().mean())}

    def describe(self) -> dict:
        return {
            **super().describe(), "query_id": self.query_id, "k": self.k, "N": self.N, "eps": self.eps,
            "candidates": self.candidates.tolist(), "perm": self.perm.tolist(),
        }  # fmt: skip


def check_options(k: int, N: int | None, eps: float, database_size: int) -> None:
    """Refuse options no order attack can have, naming the bad value.

    Args:
        k: candidates (2 <= k < database size).
        N: visible range (None, or k <= N < database size).
        eps: L-inf radius in units of 1/255 (> 0).
        database_size: items in the retrieval database.
    """
    if not 2 <= k < database_size:
        raise ValueError(f"k={k} must be in 2..{database_size - 1} (papers/004 uses {PAPER_KS})")
    if N is not None and not k <= N < database_size:
        raise ValueError(
            f"N={N} must be None (inf) or in k..{database_size - 1} (k={k}; papers/004: inf, 50 and k)"
        )
    if not eps > 0:
        raise ValueError(f"eps={eps!r} must be > 0 (in units of 1/255; papers/004 uses {PAPER_EPS})")


def fashion_database(checkpoint: str | None = None) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The ranking model, the 10,000 database images and their embeddings (cached per checkpoint file).

    Args:
        checkpoint: the ranking-model file (None: the shipped ``checkpoints/fashion_ranking.pt``).
    """
    from l2l.tasks.ranking_models import fashion_ranking_path

    return _database(str(Path(checkpoint).resolve() if checkpoint else fashion_ranking_path().resolve()))


@lru_cache(maxsize=2)
def _database(checkpoint: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    # embedding the database is a few seconds on one thread: build it once per checkpoint
    from l2l.tasks.fashion_data import load_fashion_mnist
    from l2l.tasks.ranking_models import embed_all, load_fashion_ranking_model

    model = load_fashion_ranking_model(checkpoint)
    images, _ = load_fashion_mnist("test")
    return model, images, embed_all(model, images)


@register_family("fashion_order_attack")
class OrderAttackFamily(TaskFamily):
    """Order attacks on the Fashion-MNIST ranking model, one query image of the database per instance.

    The database indices are shuffled with a fixed seed and the first 200 / 100 / 200 are the train /
    val / test queries, so the splits are disjoint. Instance (split, i) draws its permutation from its
    own seed.

    Args:
        k: candidates, the clean query's top k (papers/004: 5, 10, 25).
        N: visible range (None: inf; papers/004: inf, 50, k).
        eps: L-inf radius in units of 1/255 (papers/004: 2, 4, 8, 16; default 4).
        xi: weight of the semantics-preserving term of the white-box surrogate (papers/004: 10).
        sizes: query images in (train, val, test); None takes every image that remains.
        checkpoint: ranking-model file (default: ``checkpoints/fashion_ranking.pt``).
        database: (model, images [M, 1, 28, 28], embeddings [M, e]) to use instead of the shipped
            ones (tests use a tiny one).
    """

    name = "fashion_order_attack"
    #: Rand spends one query per step, so Q = 1,000 queries is 1,000 steps
    default_steps: ClassVar[int] = 1000
    default_eps: ClassVar[float] = 4.0

    def __init__(
        self,
        k: int = 5,
        N: int | None = None,
        eps: float | None = None,
        xi: float = DEFAULT_XI,
        sizes: tuple[int | None, int | None, int | None] = DEFAULT_SIZES,
        checkpoint: str | None = None,
        database: tuple[nn.Module, torch.Tensor, torch.Tensor] | None = None,
    ):
        self.model, self.images, self.embeddings = database or fashion_database(checkpoint)
        self.k, self.N, self.xi = k, N, xi
        self.eps = self.default_eps if eps is None else float(eps)
        check_options(k, N, self.eps, len(self.images))
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(SPLIT_SEED))
        bounds = torch.tensor([0, *split_counts(len(order), list(sizes))]).cumsum(0).tolist()
        self.pools = {s: order[bounds[i] : bounds[i + 1]] for i, s in enumerate(("train", "val", "test"))}

    def split_size(self, split: str) -> int:
        return len(self.pools[split])

    def instance(self, split: str, index: int) -> OrderAttackTask:
        self.check_index(split, index)
        query_id = int(self.pools[split][index])
        return OrderAttackTask(
            model=self.model, database=self.embeddings, query_id=query_id, image=self.images[query_id],
            k=self.k, N=self.N, eps=self.eps, perm=target_permutation(self.k, split, index), xi=self.xi,
            family=self.name,
        )  # fmt: skip


def target_permutation(k: int, split: str, index: int) -> torch.Tensor:
    """The random target permutation of instance (split, index), never the identity.

    papers/004 draws "a random permutation vector" per query; the identity asks for the order the
    candidates already have (tau_S = 1 at the clean query, nothing to attack), so it is redrawn (a
    1-in-k! event; this project's choice).

    Args:
        k: candidates.
        split: the instance's split.
        index: its index in the split.
    """
    generator = torch.Generator().manual_seed(instance_seed(SPLIT_SEED, split, index))
    while True:
        perm = torch.randperm(k, generator=generator)
        if not torch.equal(perm, torch.arange(k)):
            return perm
