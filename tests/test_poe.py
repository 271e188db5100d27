"""Product of experts against Gaussian products worked out by hand (1-D experts)."""
import math

import torch

from rmvae.model.poe import product_of_experts, recurrent_posteriors


def gaussians(*pairs):
    """[(mean, variance), ...] → mu, logvar of shape (1, E, 1)."""
    mu = torch.tensor([[[m] for m, _ in pairs]], dtype=torch.float64)
    logvar = torch.tensor([[[math.log(v)] for _, v in pairs]], dtype=torch.float64)
    return mu, logvar


def test_prior_times_one_expert():
    # N(0, 1)·N(2, 1): precision 2 → variance 1/2, mean (0·1 + 2·1)/2 = 1.
    mu, logvar = gaussians((2.0, 1.0))
    post_mu, post_logvar = product_of_experts(mu, logvar, torch.ones(1, 1))
    assert torch.allclose(post_mu, torch.tensor([[1.0]], dtype=torch.float64))
    assert torch.allclose(post_logvar.exp(), torch.tensor([[0.5]], dtype=torch.float64))


def test_two_experts_closed_form():
    # N(0, 1)·N(3, 1/2)·N(-1, 2): precisions 1, 2, 1/2 → T = 3.5; mean = (0 + 6 − 0.5)/3.5.
    mu, logvar = gaussians((3.0, 0.5), (-1.0, 2.0))
    post_mu, post_logvar = product_of_experts(mu, logvar, torch.ones(1, 2))
    assert math.isclose(post_mu.item(), 5.5 / 3.5, rel_tol=1e-12)
    assert math.isclose(post_logvar.exp().item(), 1 / 3.5, rel_tol=1e-12)


def test_masked_expert_equals_absent_expert():
    mu, logvar = gaussians((2.0, 1.0), (100.0, 0.01), (-1.0, 4.0))
    with_masked = product_of_experts(mu, logvar, torch.tensor([[1.0, 0.0, 1.0]]))
    keep = torch.tensor([0, 2])
    without = product_of_experts(mu[:, keep], logvar[:, keep], torch.ones(1, 2))
    assert torch.allclose(with_masked[0], without[0]) and torch.allclose(with_masked[1], without[1])


def test_masked_expert_values_are_ignored_even_nan():
    mu, logvar = gaussians((2.0, 1.0), (0.0, 1.0))
    mu[0, 1, 0] = float("nan")
    logvar[0, 1, 0] = float("nan")
    post_mu, post_logvar = product_of_experts(mu, logvar, torch.tensor([[True, False]]))
    assert math.isclose(post_mu.item(), 1.0) and math.isclose(post_logvar.exp().item(), 0.5)


def test_fully_masked_returns_prior_exactly():
    mu, logvar = gaussians((2.0, 1.0), (5.0, 3.0))
    post_mu, post_logvar = product_of_experts(mu, logvar, torch.zeros(1, 2))
    assert post_mu.item() == 0.0 and post_logvar.item() == 0.0
    prior_mu, prior_logvar = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-1.7]], dtype=torch.float64)
    post_mu, post_logvar = product_of_experts(mu, logvar, torch.zeros(1, 2), prior_mu, prior_logvar)
    assert post_mu.item() == 0.3 and post_logvar.item() == -1.7


def test_custom_prior():
    # Prior N(4, 1/3) (precision 3) · N(0, 1) (precision 1) → T = 4, mean 12/4 = 3.
    mu, logvar = gaussians((0.0, 1.0))
    post_mu, post_logvar = product_of_experts(mu, logvar, torch.ones(1, 1),
                                              prior_mu=torch.tensor([[4.0]], dtype=torch.float64),
                                              prior_logvar=torch.tensor([[math.log(1 / 3)]], dtype=torch.float64))
    assert math.isclose(post_mu.item(), 3.0, rel_tol=1e-12)
    assert math.isclose(post_logvar.exp().item(), 0.25, rel_tol=1e-12)


def test_batched_shapes():
    mu, logvar = torch.randn(2, 5, 4, 8), torch.randn(2, 5, 4, 8)
    mask = torch.rand(2, 5, 4) > 0.5
    post_mu, post_logvar = product_of_experts(mu, logvar, mask)
    assert post_mu.shape == post_logvar.shape == (2, 5, 8)


def sequence(*measures):
    """Per measure a list of (mean, variance) or None (absent voice) → (1, T, V, 1) tensors and mask."""
    mu = torch.zeros(1, len(measures), len(measures[0]), 1, dtype=torch.float64)
    logvar = torch.zeros_like(mu)
    mask = torch.zeros(1, len(measures), len(measures[0]))
    for t, voices in enumerate(measures):
        for v, expert in enumerate(voices):
            if expert is not None:
                mu[0, t, v, 0], logvar[0, t, v, 0] = expert[0], math.log(expert[1])
                mask[0, t, v] = 1
    return mu, logvar, mask


def test_rpoe_empty_measure_keeps_previous_posterior():
    # t=0: N(0,1)·N(2,1) = N(1, 1/2); t=1: nothing present → N(1, 1/2);
    # t=2: N(1, 1/2)·N(4, 1/2) → precision 4, mean (2 + 8)/4 = 2.5 (N(0, I) entered once).
    mu, logvar, mask = sequence([(2.0, 1.0), None], [None, None], [None, (4.0, 0.5)])
    post_mu, post_logvar = recurrent_posteriors(mu, logvar, mask)
    assert torch.allclose(post_mu[0, :, 0], torch.tensor([1.0, 1.0, 2.5], dtype=torch.float64))
    assert torch.allclose(post_logvar[0, :, 0].exp(), torch.tensor([0.5, 0.5, 0.25], dtype=torch.float64))
    assert torch.equal(post_mu[0, 1], post_mu[0, 0]) and torch.equal(post_logvar[0, 1], post_logvar[0, 0])


def test_rpoe_without_data_stays_the_prior():
    # N(0, I) enters once: with no voice present in any measure every posterior is N(0, I)
    # (re-adding it every measure would grow the precision 1, 2, 3, 4 whatever the data).
    mu, logvar, mask = sequence([None], [None], [None], [None])
    post_mu, post_logvar = recurrent_posteriors(mu, logvar, mask)
    assert torch.all(post_logvar == 0) and torch.all(post_mu == 0)


def test_gradients_are_finite_with_masked_experts():
    mu = torch.randn(3, 4, 5, requires_grad=True)
    logvar = torch.randn(3, 4, 5, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    post_mu, post_logvar = product_of_experts(mu, logvar, mask)
    (post_mu.sum() + post_logvar.sum()).backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()
    assert torch.all(mu.grad[1] == 0)
