"""Train the Fashion-MNIST deep ranking model that the ``fashion_order_attack`` tasks attack.

    python -m train.ranking_model               # writes checkpoints/fashion_ranking.pt

papers/004 sec. 3: an embedding CNN (two conv layers and a fully connected embedding, cosine distance;
:class:`l2l.tasks.ranking_models.FashionEmbeddingCNN`) trained with the triplet loss of its sec. 2.1,
``[gamma + f(q, c_p) - f(q, c_n)]_+``, on the 60,000 training images. Each epoch takes every training
image once as the anchor, with a random positive of its class and a random negative of another class
(the paper does not say how it samples triplets; this is the simplest unbiased choice). The 10,000
test images are the retrieval database; the reported recall@1 is leave-one-out on them (see
:func:`l2l.tasks.ranking_models.recall_at_1`). Nothing is selected on the database: the model after the
last step is the one saved, in float32 (the weights are well under 1 MB).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import l2l
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config
from l2l.common.device import DEVICE_HELP, resolve_device
from l2l.common.io import save_torch_atomic
from l2l.tasks.fashion_data import load_fashion_mnist
from l2l.tasks.ranking_models import (
    DEFAULT_EMBED_DIM,
    FashionEmbeddingCNN,
    embed_all,
    fashion_ranking_path,
    recall_at_1,
)


@dataclass
class RankingModelConfig:
    """Train the Fashion-MNIST embedding CNN with the triplet loss and save it with its recall@1."""

    epochs: int = doc_field(3, "passes over the 60,000 training images (each one anchor per pass)")
    batch_size: int = doc_field(128, "triplets per minibatch")
    lr: float = doc_field(1e-3, "Adam learning rate (halved for the last third of the steps)")
    margin: float = doc_field(0.2, "triplet margin gamma on the cosine distance (papers/004 gives none)")
    embed_dim: int = doc_field(DEFAULT_EMBED_DIM, "size of the embedding")
    seed: int = doc_field(0, "seed for initialization and triplet sampling")
    threads: int = doc_field(1, "torch CPU threads")
    max_train_s: float | None = doc_field(None, "stop training after this many seconds (none: no limit)")
    min_recall: float = doc_field(0.8, "fail (exit 1) if recall@1 on the database ends below this")
    out: str = doc_field(str(fashion_ranking_path()), "where to write the checkpoint")
    device: str = doc_field("cpu", DEVICE_HELP)

    def __post_init__(self) -> None:
        resolve_device(self.device)  # refuse cuda on a machine without one, before any work
        check_at_least(self, ("epochs", "batch_size", "embed_dim", "threads"))
        if not (self.lr > 0 and self.margin >= 0):
            raise ValueError(f"lr={self.lr} must be > 0 and margin={self.margin} >= 0")


def sample_triplets(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[N, 3] (anchor, positive, negative) indices: every item once as anchor, in a random order.

    Args:
        labels: class labels [N] of the training images.
        generator: the sampling stream.
    """
    n = len(labels)
    anchors = torch.randperm(n, generator=generator)
    by_class = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    positives, negatives = torch.empty_like(anchors), torch.empty_like(anchors)
    for c, members in enumerate(by_class):
        mine = torch.nonzero(labels[anchors] == c).flatten()
        # a random other member of the class: shift by 1..m-1 positions so it never equals the anchor
        pos_in_class = torch.searchsorted(members, anchors[mine])
        shift = torch.randint(1, len(members), (len(mine),), generator=generator)
        positives[mine] = members[(pos_in_class + shift) % len(members)]
        others = torch.nonzero(labels != c).flatten()
        negatives[mine] = others[torch.randint(0, len(others), (len(mine),), generator=generator)]
    return torch.stack([anchors, positives, negatives], dim=1)


def triplet_loss(model: FashionEmbeddingCNN, images: torch.Tensor, triplets: torch.Tensor, margin: float):
    """Mean of [margin + d(a, p) - d(a, n)]_+ over the ``triplets`` rows (cosine distance d).

    Args:
        model: the embedding model.
        images: the training images.
        triplets: [B, 3] indices into ``images``.
        margin: the hinge margin gamma.
    """
    emb = model(images[triplets.flatten()]).view(len(triplets), 3, -1)
    d_pos = 1.0 - (emb[:, 0] * emb[:, 1]).sum(dim=1)
    d_neg = 1.0 - (emb[:, 0] * emb[:, 2]).sum(dim=1)
    return F.relu(margin + d_pos - d_neg).mean()


def train(cfg: RankingModelConfig) -> dict:
    """Train the model as ``cfg`` says; returns the checkpoint dict (weights, config, recall@1)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    generator = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    images, labels = load_fashion_mnist("train")
    images = images.to(device)  # the triplet indices stay on the CPU generator's stream
    model = FashionEmbeddingCNN(embed_dim=cfg.embed_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total = cfg.epochs * -(-len(images) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[(2 * total) // 3], gamma=0.5)
    start, steps, stopped_early = time.perf_counter(), 0, False
    bar = tqdm(total=total, desc="ranking model", unit="step")
    model.train()
    for _ in range(cfg.epochs):
        for batch in sample_triplets(labels, generator).split(cfg.batch_size):
            loss = triplet_loss(model, images, batch, cfg.margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            stopped_early = cfg.max_train_s is not None and time.perf_counter() - start > cfg.max_train_s
            if stopped_early:
                break
        if stopped_early:
            break
    bar.close()
    train_wall_s = time.perf_counter() - start
    model.eval()
    db_images, db_labels = load_fashion_mnist("test")
    return {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": asdict(cfg),
        "recall_at_1": recall_at_1(embed_all(model, db_images.to(device)).cpu(), db_labels),
        "steps": steps,
        "stopped_early": stopped_early,
        "train_wall_s": train_wall_s,
        "version": l2l.__version__,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line, train, save atomically and print recall@1; returns the checkpoint."""
    cfg = parse_config(RankingModelConfig, argv)
    with user_input():
        load_fashion_mnist("train")
        load_fashion_mnist("test")
    ckpt = train(cfg)
    save_torch_atomic(Path(cfg.out), ckpt)
    print(
        f"recall@1 {ckpt['recall_at_1']:.4f} on the 10,000-image database (leave-one-out), "
        f"{ckpt['steps']} steps in {ckpt['train_wall_s']:.0f} s"
        f"{' (stopped by max_train_s)' if ckpt['stopped_early'] else ''}; saved {cfg.out}"
    )
    if ckpt["recall_at_1"] < cfg.min_recall:
        raise SystemExit(f"recall@1 {ckpt['recall_at_1']:.4f} is below {cfg.min_recall}")
    return ckpt


if __name__ == "__main__":
    run_cli(main)
