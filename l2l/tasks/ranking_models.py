"""The deep ranking model the order attack targets (papers/004 sec. 3): an embedding CNN, cosine distance.

papers/004 trains "a CNN with 2-convolution-1-fully-connected network on Fashion-MNIST" following Zhou
et al. (2020); neither gives the widths, so the ones here are this project's choice: conv5x5-32,
max-pool, conv5x5-64, max-pool, a fully connected embedding of ``embed_dim`` (128) outputs. The
distance between a query and a candidate is the cosine distance 1 - cos(e_q, e_c), so embeddings are
L2-normalized once and ranking is by descending dot product.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from l2l.common.paths import checkpoints_dir
from l2l.tasks.target_models import read_model_checkpoint

FASHION_RANKING_CHECKPOINT = "fashion_ranking.pt"
DEFAULT_EMBED_DIM = 128


class FashionEmbeddingCNN(nn.Module):
    """Images [B, 1, 28, 28] in [0, 1] -> unit-norm embeddings [B, embed_dim].

    Args:
        embed_dim: size of the embedding (the fully connected layer's outputs).
    """

    def __init__(self, embed_dim: int = DEFAULT_EMBED_DIM):
        super().__init__()
        self.embed_dim = embed_dim
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        self.embed = nn.Linear(64 * 4 * 4, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(self.features(images)), dim=1)


def cosine_distance(queries: torch.Tensor, database: torch.Tensor) -> torch.Tensor:
    """1 - cos between unit-norm rows: [B, e] x [M, e] -> [B, M].

    Args:
        queries: unit-norm query embeddings.
        database: unit-norm candidate embeddings.
    """
    return 1.0 - queries @ database.T


@torch.no_grad()
def embed_all(model: nn.Module, images: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """Embeddings of ``images`` [N, 1, 28, 28], computed ``chunk`` images at a time (no gradient).

    Args:
        model: the embedding model.
        images: the images.
        chunk: images per forward pass (bounds memory).
    """
    return torch.cat([model(part) for part in images.split(chunk)])


@torch.no_grad()
def recall_at_1(embeddings: torch.Tensor, labels: torch.Tensor, chunk: int = 1000) -> float:
    """Fraction of database items whose nearest *other* item (cosine) has the same label.

    Every item is a query against the whole database with itself left out, the usual leave-one-out
    recall@1 of retrieval benchmarks (each query's own entry is set to +inf distance before the argmin).

    Args:
        embeddings: unit-norm embeddings [N, e] of the database.
        labels: their class labels [N].
        chunk: queries per distance block (bounds memory at chunk x N).
    """
    hits = 0
    for start in range(0, len(embeddings), chunk):
        dist = cosine_distance(embeddings[start : start + chunk], embeddings)
        rows = torch.arange(dist.shape[0])
        dist[rows, rows + start] = float("inf")
        hits += int((labels[dist.argmin(dim=1)] == labels[start : start + chunk]).sum())
    return hits / len(embeddings)


def fashion_ranking_path() -> Path:
    """The shipped ranking-model checkpoint, ``checkpoints/fashion_ranking.pt``."""
    return checkpoints_dir() / FASHION_RANKING_CHECKPOINT


def read_ranking_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict (``state_dict``, ``config``, ``recall_at_1``, ``version``).

    Args:
        path: the checkpoint file.
    """
    required = {"state_dict", "config", "recall_at_1"}
    return read_model_checkpoint(path, "ranking-model", "python -m train.ranking_model", required)


@lru_cache(maxsize=2)
def load_fashion_ranking_model(path: str | None = None) -> FashionEmbeddingCNN:
    """The trained ranking model in eval mode (float32), with gradients off for its weights.

    The checkpoint may store float16 weights; they are cast back to float32 here.

    Args:
        path: the checkpoint (None: the shipped ``checkpoints/fashion_ranking.pt``).
    """
    ckpt = read_ranking_checkpoint(Path(path) if path else fashion_ranking_path())
    model = FashionEmbeddingCNN(embed_dim=int(ckpt["config"].get("embed_dim", DEFAULT_EMBED_DIM)))
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
