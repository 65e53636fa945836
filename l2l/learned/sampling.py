"""The Guided-ES directions of the ZO-LSTM's ablation (papers/002 app. B), for its ``guided_es`` sampler."""

from __future__ import annotations

import torch

from l2l.estimators import gaussian_directions


def guided_es_directions(
    q: int,
    generator: torch.Generator,
    surrogates: torch.Tensor,
    alpha: float = 0.5,
) -> torch.Tensor:
    """q directions from N(0, alpha I + (1 - alpha) U U^T), U an orthonormal basis of the surrogates.

    Each direction is u = sqrt(alpha) z + sqrt(1 - alpha) U e with z ~ N(0, I_d), e ~ N(0, I_k), then
    rescaled to the norm of its z, so the query norm does not change (papers/002 app. B). Without a
    usable surrogate (all zero, as at the first step) the directions are plain N(0, I_d).

    Not the ``guided_es`` baseline's sampler (:func:`l2l.estimators.guided_directions`, Maheswaranathan
    et al.'s covariance, where the guided subspace holds 1 - alpha of E||u||^2): this one follows
    papers/002's eq. 7, where it holds about 0.5% at d = 784, k = 2. It stays separate so that the
    ablation reproduces the paper's and the published ``zo_lstm_guided_es`` figure
    (docs/results/mnist_attack.md).

    Args:
        q: number of directions.
        generator: draws z (first, [q, d]) and then e ([q, k]).
        surrogates: [d, k] surrogate gradients (the ZO-LSTM uses the last estimate and the last update).
        alpha: weight of the full space against the guided subspace, in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"guided-ES alpha={alpha!r} must be in [0, 1]")
    dim, k = surrogates.shape
    z = gaussian_directions(q, dim, generator)
    e = torch.randn(q, k, generator=generator, device=generator.device)
    if not bool(surrogates.abs().sum() > 0):
        return z
    basis, _ = torch.linalg.qr(surrogates)  # [d, k], orthonormal columns
    u = alpha**0.5 * z + (1.0 - alpha) ** 0.5 * e @ basis.T
    return u * (z.norm(dim=1, keepdim=True) / u.norm(dim=1, keepdim=True).clamp_min(1e-30))
