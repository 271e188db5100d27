"""Product of Gaussian experts, per measure and recurrent over measures (docs/design.md §2.2–2.3).

A Gaussian expert is ``(mu, logvar)``. The product of experts N(μ_i, σ_i²) is Gaussian with
precision T = Σ_i 1/σ_i² and mean μ = (Σ_i μ_i/σ_i²) / T (Wu & Goodman 2018, "Multimodal
Generative Models for Scalable Weakly-Supervised Learning", eq. 4). Both are computed in
log-variance space: log σ² = −logsumexp_i(−log σ_i²), and the mean weights
(1/σ_i²) / T = softmax_i(−log σ_i²), so no precision is ever exponentiated on its own.
"""
from __future__ import annotations

import torch
from torch import Tensor


def product_of_experts(mu: Tensor, logvar: Tensor, mask: Tensor, prior_mu: Tensor | None = None,
                       prior_logvar: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Combine the present experts and a prior expert into one Gaussian.

    The prior expert is added here, callers never add it themselves: N(0, I) by default,
    or the given Gaussian (the previous measure's posterior under RPoE, the temporal
    model's prediction for a target measure).

    Args:
        mu: expert means ``(..., E, Z)``.
        logvar: expert log-variances ``(..., E, Z)``.
        mask: ``(..., E)``, bool or 0/1; 1 = the expert is present. Absent experts
            contribute nothing, exactly as if they had not been passed (their values,
            even NaN, are ignored).
        prior_mu: ``(..., Z)`` mean of the prior expert, or None for N(0, I).
        prior_logvar: ``(..., Z)`` log-variance of the prior expert, or None.

    Returns:
        ``(mu, logvar)`` of the product, each ``(..., Z)``. With every expert masked it is
        the prior, exactly.
    """
    if mu.shape != logvar.shape or mask.shape != mu.shape[:-1]:
        raise ValueError(f"need mu, logvar (..., E, Z) and mask (..., E); got {tuple(mu.shape)}, "
                         f"{tuple(logvar.shape)}, {tuple(mask.shape)}")
    if (prior_mu is None) != (prior_logvar is None):
        raise ValueError("pass both prior_mu and prior_logvar, or neither")
    batch_shape, z_dim = mu.shape[:-2], mu.shape[-1]
    if prior_mu is None:
        prior_mu = mu.new_zeros(())
        prior_logvar = mu.new_zeros(())
    prior_mu = prior_mu.expand(*batch_shape, z_dim).unsqueeze(-2)  # (..., 1, Z)
    prior_logvar = prior_logvar.expand(*batch_shape, z_dim).unsqueeze(-2)

    present = torch.cat([torch.ones_like(mask[..., :1], dtype=torch.bool), mask != 0], dim=-1)
    present = present.unsqueeze(-1)  # (..., 1 + E, 1)
    all_mu = torch.cat([prior_mu, mu], dim=-2)  # (..., 1 + E, Z)
    # Absent experts get precision 0, i.e. log-precision −inf; their means are zeroed so
    # that 0 · NaN cannot leak into the sum.
    log_precision = torch.cat([-prior_logvar, -logvar], dim=-2).masked_fill(~present, float("-inf"))
    all_mu = all_mu.masked_fill(~present, 0.0)

    post_logvar = -torch.logsumexp(log_precision, dim=-2)  # log σ² = −log Σ 1/σ_i²
    weights = torch.softmax(log_precision, dim=-2)  # (1/σ_i²) / T
    post_mu = (weights * all_mu).sum(dim=-2)
    return post_mu, post_logvar


def recurrent_posteriors(mu: Tensor, logvar: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Recurrent PoE (RPoE): the posterior of measure t−1 is the prior expert of measure t.

    N(0, I) is the prior expert of measure 0 only, so it enters once and a measure with no
    voice present keeps the previous posterior. (Re-adding N(0, I) at every measure beside the
    previous posterior would make the precision grow by one a measure whatever the data.)

    Args:
        mu: voice experts ``(B, T, V, Z)``.
        logvar: ``(B, T, V, Z)``.
        mask: ``(B, T, V)``, 1 = voice present.

    Returns:
        ``(post_mu, post_logvar)``, each ``(B, T, Z)``.
    """
    if mu.dim() != 4 or mask.shape != mu.shape[:3]:
        raise ValueError(f"need mu (B, T, V, Z) and mask (B, T, V); got {tuple(mu.shape)}, {tuple(mask.shape)}")
    mask = mask != 0
    post_mu, post_logvar = [], []
    for t in range(mu.shape[1]):  # the recurrence itself is sequential; T is a handful of measures
        if t == 0:
            step = product_of_experts(mu[:, t], logvar[:, t], mask[:, t])
        else:
            step = product_of_experts(mu[:, t], logvar[:, t], mask[:, t],
                                      prior_mu=post_mu[-1], prior_logvar=post_logvar[-1])
        post_mu.append(step[0])
        post_logvar.append(step[1])
    return torch.stack(post_mu, dim=1), torch.stack(post_logvar, dim=1)  # (B, T, Z)
