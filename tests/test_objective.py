"""The objective against independent truth: KL and Gaussian densities against torch.distributions,
active units on hand-made posterior means, the importance-weighted NLL (Burda et al. 2016)
against brute-force integration over a one-dimensional latent, and the KLs a real step logs."""
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal
from torch.nn import functional as F

from rmvae import losses
from rmvae.config import STEPS_PER_MEASURE as S
from rmvae.config import Config, LossConfig, ModelConfig
from rmvae.model.writer import WriterContext
from rmvae.module import RMVAEModule

P, T = 6, 3  # pitches, input measures
# Both measure decoders: every voice and step independently, or the writer token by token (over the
# whole window, the default, or after the measure before only).
DECODERS = {"factorised": {"measure_decoder": "factorised"},
            "writer-window": {"measure_decoder": "autoregressive", "writer_context": "window"},
            "writer-measure": {"measure_decoder": "autoregressive", "writer_context": "measure"}}


def make_module(voices=2, z_dim=1, seed=0, loss=None, **model_fields) -> RMVAEModule:
    """A tiny module without dropout (so eval and train differ only in sampling)."""
    torch.manual_seed(seed)
    model = ModelConfig(size="small", width_scale=0.25, z_dim=z_dim, dropout_fc=0.0, dropout_rnn=0.0,
                        writer_dropout=0.0, **model_fields)
    config = Config(model=model, loss=LossConfig(n_subsets=1, **(loss or {})))
    info = {"encoding": "mono", "low": 60, "high": 60 + P - 1, "n_voices": voices}
    return RMVAEModule(config.to_dict(), info)


def random_batch(voices=2, seed=1, size=3) -> dict:
    """Random tokens; window 1 is left-padded, window 2 misses a voice in its inputs and its target."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, P + 2, (size, T + 1, voices, S), generator=generator)
    input_mask = torch.ones(size, T, voices, dtype=torch.bool)
    input_mask[1, :2] = False
    input_mask[2, :, 1] = False
    target_mask = torch.ones(size, voices, dtype=torch.bool)
    target_mask[2, 0] = False
    return {"inputs": x[:, :T], "input_mask": input_mask, "target": x[:, T], "target_mask": target_mask}


def token_log_likelihood(decoded, tokens, voice_mask):
    """log p(tokens | decoder outputs) summed over steps and present voices, written out from the
    token model itself (not through losses.mono_recon): p(hold) = σ(h); any other token c:
    (1 − σ(h))·softmax(pitch logits)[c]. Float64, ``(...)`` for tokens ``(..., V, S)``."""
    n_pitches = decoded.pitch_logits.shape[-1] - 1
    hold_logits = decoded.hold_logits.double()
    is_hold = tokens == n_pitches + 1
    log_pitch = torch.log_softmax(decoded.pitch_logits.double(), dim=-1)
    log_pitch = log_pitch.gather(-1, tokens.clamp(max=n_pitches).unsqueeze(-1)).squeeze(-1)
    per_step = torch.where(is_hold, F.logsigmoid(hold_logits), F.logsigmoid(-hold_logits) + log_pitch)
    return (per_step.sum(dim=-1) * voice_mask.double()).sum(dim=-1)


# --- KL divergence and Gaussian densities ----------------------------------------------------------


def random_gaussians(n, dtype, seed=0):
    """Pairs (q, p) with means from 0 to ±100 and variances from e^−20 to e^20, per dimension."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.0, 1e-3, 1.0, 30.0], dtype=dtype)
    mu = torch.randn(n, 4, generator=generator, dtype=dtype) * scales
    prior_mu = torch.randn(n, 4, generator=generator, dtype=dtype) * scales.flip(0)
    logvar = torch.rand(n, 4, generator=generator, dtype=dtype) * 40 - 20
    prior_logvar = torch.rand(n, 4, generator=generator, dtype=dtype) * 40 - 20
    return mu, logvar, prior_mu, prior_logvar


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_is_never_negative(dtype):
    mu, logvar, prior_mu, prior_logvar = random_gaussians(20000, dtype)
    per_dim = losses.kl_divergence(mu, logvar, prior_mu, prior_logvar, per_dim=True)
    assert per_dim.shape == (20000, 4) and torch.isfinite(per_dim).all()
    assert (per_dim >= 0).all()
    assert torch.equal(losses.kl_divergence(mu, logvar, prior_mu, prior_logvar), per_dim.sum(-1))
    # Near-equal Gaussians too (the regime of a posterior that barely moves from its prior).
    near = losses.kl_divergence(mu, logvar, mu + 0.01, logvar + 0.01, per_dim=True)
    assert (near > 0).all()


def test_kl_matches_torch_distributions():
    mu, logvar, prior_mu, prior_logvar = random_gaussians(20000, torch.float64, seed=1)
    expected = torch.distributions.kl_divergence(Normal(mu, torch.exp(0.5 * logvar)),
                                                 Normal(prior_mu, torch.exp(0.5 * prior_logvar)))
    got = losses.kl_divergence(mu, logvar, prior_mu, prior_logvar, per_dim=True)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    # The default prior is N(0, I).
    zeros = torch.zeros_like(mu)
    torch.testing.assert_close(losses.kl_divergence(mu, logvar), losses.kl_divergence(mu, logvar, zeros, zeros))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_kl_of_a_gaussian_with_itself_is_zero_up_to_rounding(dtype, tolerance):
    mu, logvar, _, _ = random_gaussians(20000, dtype)
    kl = losses.kl_divergence(mu, logvar, mu, logvar, per_dim=True)
    assert kl.abs().max() <= tolerance


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_of_a_gaussian_with_itself_is_exactly_zero(dtype):
    mu, logvar, _, _ = random_gaussians(2000, dtype)
    assert (losses.kl_divergence(mu, logvar, mu, logvar, per_dim=True) == 0).all()


def test_gaussian_log_density_matches_torch_distributions():
    generator = torch.Generator().manual_seed(2)
    mu = torch.randn(5, 3, generator=generator, dtype=torch.float64) * 3
    logvar = torch.tensor([-12.0, 0.0, 9.0], dtype=torch.float64).expand(5, 3)
    z = mu + torch.randn(7, 5, 3, generator=generator, dtype=torch.float64) * torch.exp(0.5 * logvar)  # (K, B, Z)
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    got = losses.gaussian_log_density(z, mu, logvar)
    assert got.shape == (7, 5)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-9)
    # At the mean of N(0, I) in 3 dimensions: −3/2 log 2π.
    assert math.isclose(losses.gaussian_log_density(torch.zeros(3), torch.zeros(3), torch.zeros(3)).item(),
                        -1.5 * math.log(2 * math.pi), rel_tol=1e-6)


def test_mono_token_likelihood_is_normalised():
    """Σ over all P+2 token classes of exp(−mono_recon) = 1 at a step: the reconstruction is a proper
    likelihood, which the importance-weighted estimate needs to bound a true NLL."""
    generator = torch.Generator().manual_seed(3)
    pitch_logits = torch.randn(4, 1, 1, P + 1, generator=generator) * 3
    hold_logits = torch.randn(4, 1, 1, generator=generator) * 3
    total = sum(torch.exp(-losses.mono_recon(pitch_logits, hold_logits, torch.full((4, 1, 1), c), torch.ones(4, 1)))
                for c in range(P + 2))
    torch.testing.assert_close(total, torch.ones(4), rtol=1e-6, atol=1e-6)


# --- active units ----------------------------------------------------------------------------------

D = math.sqrt(0.005)
# Four posterior means m, three dimensions: dim 0 varies with (population) variance 1, dim 1 is
# constant, dim 2 varies with variance 0.005 < 0.01.
MEANS = torch.tensor([[-1.0, 3.0, D], [1.0, 3.0, -D], [-1.0, 3.0, D], [1.0, 3.0, -D]], dtype=torch.float64)


def test_active_units_from_hand_sums():
    # count 4; Σm = (0, 12, 0); Σm² = (4, 36, 4·0.005) → variances (4/4 − 0, 36/4 − 3², 0.02/4 − 0) = (1, 0, 0.005)
    count = torch.full((3,), 4.0, dtype=torch.float64)
    total = torch.tensor([0.0, 12.0, 0.0], dtype=torch.float64)
    squares = torch.tensor([4.0, 36.0, 0.02], dtype=torch.float64)
    assert losses.active_units(count, total, squares).item() == 1
    assert losses.active_units(count, total, squares, threshold=0.001).item() == 2  # dim 2 counts now
    assert losses.active_units(count, total, squares, threshold=1.5).item() == 0
    # variance 0.011 is above the default threshold, 0.009 below
    assert losses.active_units(torch.tensor([4.0, 4.0]), torch.zeros(2), torch.tensor([0.044, 0.036])).item() == 1


class _Posteriors:
    """What _accumulate_units reads from a model output."""

    def __init__(self, post_mu, input_prior_mu=None):
        self.post_mu, self.input_prior_mu = post_mu, input_prior_mu


def _unit_batches():
    """MEANS spread over two batches of one window, 3 measures each, with one absent measure per
    window whose (huge) posterior mean must not count."""
    first = torch.stack([torch.full((3,), 100.0, dtype=torch.float64), MEANS[0], MEANS[1]]).unsqueeze(0)
    second = torch.stack([MEANS[2], MEANS[3], torch.full((3,), -50.0, dtype=torch.float64)]).unsqueeze(0)
    first_mask = torch.tensor([[[False, False], [True, False], [True, True]]])  # (1, T, V)
    second_mask = torch.tensor([[[False, True], [True, True], [False, False]]])
    return (first.float(), first_mask), (second.float(), second_mask)


def test_accumulated_units_count_present_measures_only():
    module = make_module(z_dim=3)
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    module.on_validation_epoch_start()
    for post_mu, mask in _unit_batches():
        module._accumulate_units(_Posteriors(post_mu), mask)
    expected = torch.tensor([[4.0, 4.0, 4.0], [0.0, 12.0, 0.0], [4.0, 36.0, 0.02]], dtype=torch.float64)
    torch.testing.assert_close(module._unit_sums, expected, rtol=1e-6, atol=1e-7)
    module.on_validation_epoch_end()
    assert logged == {"val/active_units": 1.0}
    assert module._unit_sums is None  # reset for the next epoch


def test_active_units_read_the_shift_from_the_temporal_prior():
    """Under a temporal prior the posterior mean moves with the prior; only m − prior counts."""
    module = make_module(z_dim=3)
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    generator = torch.Generator().manual_seed(4)
    for post_shift, mask in _unit_batches():
        prior = torch.randn(post_shift.shape, generator=generator) * 5  # varies a lot, every dim
        module._accumulate_units(_Posteriors(post_shift + prior, prior), mask)
    module.on_test_epoch_end()
    assert logged["test/active_units"] == 1.0
    # The posterior means themselves would make all three dimensions active.
    for post_shift, mask in _unit_batches():
        prior = torch.randn(post_shift.shape, generator=generator) * 5
        module._accumulate_units(_Posteriors(post_shift + prior), mask)
    module.on_test_epoch_end()
    assert logged["test/active_units"] == 3.0


# --- the importance-weighted NLL -------------------------------------------------------------------


def widen_experts_and_use_z(module, expert_logvar_shift=3.0, z_gain=3.0, writer_gain=10.0):
    """Make the one-dimensional test well posed: wide target experts, so the proposal (prior ⊗
    experts) covers the posterior and the weights have finite variance; and decoders that depend
    on z strongly enough for the posterior to be narrower than the prior (a visible K=1 gap).

    z reaches a writer's tokens through its LSTM's gates, which saturate: z's input weights and the
    heads' output weights are both scaled by ``writer_gain`` (a K=1 gap of ≈ 1 nat, as the
    factorised decoders' at ``z_gain``; at ``z_gain`` alone it is ≈ 0.005 nats)."""
    model = module.model
    z_dim = model.config.z_dim
    with torch.no_grad():
        for encoder in model.encoders:
            encoder.to_logvar.bias += expert_logvar_shift
        if model.writer is not None:
            # The writer's LSTM reads [tokens before, tokens a measure back, position, z, temporal state].
            z_at = 2 * model.n_voices * model.config.writer_embed + model.config.writer_embed
            model.writer.lstm.weight_ih_l0[:, z_at:z_at + z_dim] *= writer_gain
            for head in model.writer.heads:
                head[-1].weight *= writer_gain
        else:
            for decoder in model.decoders:
                first = next(layer for layer in decoder.measure_fc.modules() if isinstance(layer, nn.Linear))
                first.weight[:, :z_dim] *= z_gain  # decoder input is [z, temporal state]
    return module


def window_context(output, b: int) -> WriterContext | None:
    """Window ``b``'s writer context in ``output`` (None for factorised decoders)."""
    context = output.target_context
    if context is None:
        return None
    return WriterContext(context.previous[b:b + 1], None if context.lstm is None else
                         tuple(part[:, b:b + 1] for part in context.lstm))


@torch.no_grad()
def exact_by_integration(module, batch, points=4001, width=12.0):
    """Per window: the exact −log p(target | past) = −log ∫ p(z | past) p(target | z, past) dz, and the
    exact −ELBO of the estimator's proposal q, E_q[−log p(target | z) − log p(z) + log q(z)], by the
    trapezoid rule on a grid of ±``width`` prior standard deviations (z_dim = 1)."""
    out = module.model(batch["inputs"], batch["input_mask"], batch["target"], batch["target_mask"],
                       sample=False, reconstruct=False)
    nll, negative_elbo = [], []
    for b in range(len(batch["inputs"])):
        prior = Normal(out.prior_mu[b, 0].double(), torch.exp(0.5 * out.prior_logvar[b, 0].double()))
        proposal = Normal(out.target_mu[b, 0].double(), torch.exp(0.5 * out.target_logvar[b, 0].double()))
        z = torch.linspace(float(prior.mean - width * prior.stddev), float(prior.mean + width * prior.stddev),
                           points, dtype=torch.float64)
        decoded = module.model.decode(z.float().unsqueeze(-1), out.state[b].expand(points, -1),
                                      batch["target"][b], window_context(out, b))  # a writer scores the target
        log_lik = token_log_likelihood(decoded, batch["target"][b].expand(points, -1, -1),
                                       batch["target_mask"][b].expand(points, -1))
        trapezoid = torch.ones(points, dtype=torch.float64)
        trapezoid[[0, -1]] = 0.5
        dz = z[1] - z[0]
        log_joint = log_lik + prior.log_prob(z)
        nll.append(-(torch.logsumexp(log_joint + trapezoid.log(), 0) + dz.log()))
        log_q = proposal.log_prob(z)
        negative_elbo.append(-(trapezoid * log_q.exp() * (log_joint - log_q)).sum() * dz)
    return torch.stack(nll), torch.stack(negative_elbo)


def test_predictive_nll_repeats_for_the_same_generator_seed():
    module = make_module(z_dim=4).eval()
    batch = random_batch()
    first = module.predictive_nll(batch, 16, torch.Generator().manual_seed(5))
    assert first.shape == (3,) and torch.isfinite(first).all()
    assert torch.equal(first, module.predictive_nll(batch, 16, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, module.predictive_nll(batch, 16, torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_with_the_prior_as_proposal_the_estimate_is_the_nll_of_prior_samples(monkeypatch, decoder):
    """No known target voice → q = the prior, log p(z) − log q(z) = 0, and the estimate is
    −log (1/K) Σ_k p(x | z_k) with z_k drawn from the prior with the generator's noise (a writer
    scores the target after the window, teacher-forced)."""
    module = make_module(z_dim=2, **DECODERS[decoder]).eval()
    batch = random_batch()
    forward = module.model.forward
    monkeypatch.setattr(module.model, "forward", lambda inputs, input_mask, target=None, target_mask=None, **kw:
                        forward(inputs, input_mask, **kw))  # the proposal ignores the target
    out = forward(batch["inputs"], batch["input_mask"], sample=False, reconstruct=False)
    for samples in (1, 5):
        estimate = module.predictive_nll(batch, samples, torch.Generator().manual_seed(3))
        eps = torch.randn((samples, 3, 2), generator=torch.Generator().manual_seed(3))
        z = out.prior_mu + torch.exp(0.5 * out.prior_logvar) * eps  # (K, B, Z)
        decoded = [module.model.decode(z[k], out.state, batch["target"], out.target_context) for k in range(samples)]
        log_lik = torch.stack([token_log_likelihood(d, batch["target"], batch["target_mask"]) for d in decoded])
        expected = -(torch.logsumexp(log_lik, dim=0) - math.log(samples))
        torch.testing.assert_close(estimate.double(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_importance_weighted_nll_against_exact_integration(decoder):
    """Burda et al. 2016: E[estimate_K] = −ELBO at K = 1, non-increasing in K, an upper bound on the true
    NLL for every K, and consistent (→ the exact NLL as K grows). Single estimates may fall below
    the truth; the bound holds for their expectation, so means over seeds are compared."""
    module = widen_experts_and_use_z(make_module(z_dim=1, **DECODERS[decoder]).eval())
    batch = random_batch()
    exact, negative_elbo = exact_by_integration(module, batch)
    assert (negative_elbo > exact + 0.1).all()  # the proposal is not the posterior: K = 1 is loose

    def estimates(samples, repeats):
        return torch.stack([module.predictive_nll(batch, samples, torch.Generator().manual_seed(r))
                            for r in range(repeats)]).double()  # (repeats, B)

    one, sixteen, many = estimates(1, 300), estimates(16, 100), estimates(4000, 2)
    se_one = one.std(0) / math.sqrt(300)
    # K = 1: the mean estimate is the exact −ELBO.
    assert ((one.mean(0) - negative_elbo).abs() < 4 * se_one + 0.02).all(), (one.mean(0), negative_elbo, se_one)
    # Averaged over the windows: above the truth, and tighter at K = 16 than at K = 1.
    gap_one, gap_sixteen = (one - exact).mean(1), (sixteen - exact).mean(1)  # per repeat, window-averaged
    se_gap_one, se_gap_sixteen = gap_one.std() / math.sqrt(300), gap_sixteen.std() / math.sqrt(100)
    assert gap_one.mean() > 5 * se_gap_one
    assert gap_one.mean() - gap_sixteen.mean() > 4 * math.hypot(se_gap_one, se_gap_sixteen)
    assert gap_sixteen.mean() > -3 * se_gap_sixteen
    # K = 4000: the exact NLL, every window.
    assert ((many.mean(0) - exact).abs() < 0.05).all(), (many, exact)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_direct_model_nll_is_the_exact_nll_of_its_prediction(decoder):
    module = make_module(z_dim=4, kind="direct", **DECODERS[decoder]).eval()
    batch = random_batch()
    nll = module.predictive_nll(batch, 1, torch.Generator().manual_seed(0))
    assert torch.equal(nll, module.predictive_nll(batch, 64, torch.Generator().manual_seed(1)))  # nothing sampled
    scored = batch["target"] if module.model.writer is not None else None  # a writer scores the target it is given
    output = module.model(batch["inputs"], batch["input_mask"], scored, sample=False, reconstruct=False)
    expected = -token_log_likelihood(output.prediction, batch["target"], batch["target_mask"])
    torch.testing.assert_close(nll.double(), expected, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        _, logs, _ = module.model_step(batch, "val")
    torch.testing.assert_close(logs["recon_nll"], nll.mean(), rtol=1e-5, atol=1e-4)


# --- KLs logged by a real step ---------------------------------------------------------------------

THESIS = dict(latent_prior="standard", temporal_input="latents")


@pytest.mark.parametrize("design", [{}, THESIS], ids=["vrnn", "thesis"])
@pytest.mark.parametrize("loss", [{}, {"free_bits": 0.5}, {"target_posterior": False}],
                         ids=["default", "free_bits", "no_target_posterior"])
def test_logged_kl_terms_are_not_negative(design, loss):
    module = make_module(voices=3, z_dim=4, loss=loss, **design)
    logged = {}
    module.log = lambda name, value, **kwargs: logged.setdefault(name, []).append(float(value))
    for seed in range(3):
        batch = random_batch(voices=3, seed=seed)
        module.train()
        module.training_step(batch, seed)
        module.eval()
        with torch.no_grad():
            module.validation_step(batch, seed)
    kls = {name: values for name, values in logged.items() if name.split("/", 1)[1].startswith("kl")}
    for stage in ("train", "val"):  # every term was logged (a NaN would have been skipped)
        assert {f"{stage}/kl", f"{stage}/kl_inputs", f"{stage}/kl_target_full", f"{stage}/kl_target_voice0",
                f"{stage}/kl_target_subset"} <= set(kls)
    assert all(len(values) == 3 for values in kls.values())
    negative = {name: min(values) for name, values in kls.items() if min(values) < 0}
    assert not negative, negative


def test_training_summary_warns_only_when_no_unit_is_active(tmp_path):
    from rmvae.train import collapse_warning, last_validation

    csv = tmp_path / "metrics.csv"
    csv.write_text("step,val/nll,val/active_units,val/kl_inputs\n10,70.0,3,5.0\n20,,,\n30,68.0,0,0.0001\n")
    result = last_validation(csv, ("val/nll", "val/active_units", "val/kl_inputs", "val/absent"))
    assert result == {"val/nll": 68.0, "val/active_units": 0.0, "val/kl_inputs": 0.0001}
    assert "posterior collapse" in collapse_warning(result)
    assert collapse_warning({**result, "val/active_units": 1.0}) is None
    assert collapse_warning({"val/nll": 60.0}) is None  # a direct predictor has no latent units


def test_old_configs_load_where_this_version_computes_what_they_did():
    """A stored config from before a field existed gets the field's old value; a removed field at
    the value this version always computes is dropped, at any other value it is refused; a music
    loss switched off by the old boolean reads as weight 0."""
    from rmvae.config import REMOVED_FIELDS, ConfigError, upgrade_stored

    assert upgrade_stored(Config().to_dict()) == Config().to_dict()
    old = Config().to_dict()
    del old["model"]["measure_decoder"]
    assert Config.from_stored(old).model.measure_decoder == "factorised"

    for key, kept in REMOVED_FIELDS.items():
        section, name = key.split(".")
        stored = Config().to_dict()
        stored[section][name] = kept
        assert Config.from_stored(stored) == Config()
    stored = Config().to_dict()
    stored["model"]["skip_last_measure"] = False
    assert Config.from_stored(stored) == Config()
    stored["model"]["skip_last_measure"] = True
    with pytest.raises(ConfigError, match=r"model\.skip_last_measure=True: this version of rmvae no longer supports"):
        Config.from_stored(stored)

    stored = Config().to_dict()
    stored["loss"].update(harmony=False, scale=False, rhythm=True)
    loss = Config.from_stored(stored).loss
    assert loss.harmony_weights == (0.0, 0.0, 0.0) and loss.scale_weight == 0.0
    assert loss.rhythm_weight == LossConfig().rhythm_weight


def test_subset_terms_read_only_their_voices_of_the_past():
    """A one-voice term hides the other voice in every input measure and knows only its own voice
    of the target (the thesis's sub-sampled ELBO)."""
    module = make_module(voices=2).train()
    batch = random_batch(voices=2)
    seen = []
    original = module.model.from_experts

    def spy(mu, logvar, input_mask, *args, **kwargs):
        known = args[2] if len(args) > 2 else kwargs.get("target_mask")
        seen.append((input_mask.clone(), None if known is None else known.clone()))
        return original(mu, logvar, input_mask, *args, **kwargs)

    module.model.from_experts = spy
    module.model_step(batch, "train")
    voice0_inputs, voice0_known = seen[1]  # terms: full, voice0, voice1, random subsets
    full_inputs = batch["input_mask"]
    assert torch.equal(voice0_known, batch["target_mask"] & torch.tensor([True, False]))
    assert torch.equal(voice0_inputs, full_inputs & torch.tensor([True, False])) and not voice0_inputs[..., 1].any()


def test_fill_accuracy_sees_the_filled_voice_in_the_past_and_the_others_in_the_target():
    """acc_fill evaluates what `rmvae generate --task fill` predicts: the filled voice's earlier
    measures visible, the kept voices known in the target, the filled one not."""
    module = make_module(voices=2).eval()
    batch = random_batch(voices=2)
    calls = []
    original = module.model.forward

    def spy(inputs, input_mask, target=None, target_mask=None, **kwargs):
        calls.append((input_mask.clone(), target_mask.clone()))
        return original(inputs, input_mask, target, target_mask, **kwargs)

    module.model.forward = spy
    with torch.no_grad():
        module.fill_logs(batch, batch_idx=1)  # batch 1 fills voice 1
    input_mask, target_mask = calls[0]
    assert torch.equal(input_mask, batch["input_mask"].bool())
    assert torch.equal(target_mask, batch["target_mask"].bool() & torch.tensor([True, False]))


def test_a_music_loss_of_weight_zero_is_off_but_still_logged():
    """Weight 0 is the only off switch: the term leaves the objective (a NaN in it cannot reach the
    loss; the weighted harmony term is not even computed), and its value is still logged."""
    module = make_module(voices=2, loss={"scale_weight": 0.0, "rhythm_weight": 0.0,
                                         "harmony_weights": (0.0, 0.0, 0.0)})
    music = {"scale": torch.tensor(float("nan")), "rhythm": torch.tensor(float("nan"))}
    assert module.weighted_music(music) == 0
    _, logs, _ = module.model_step(random_batch(voices=2), "val")
    assert "harmony_loss" not in logs and {"scale", "rhythm", "harmony"} <= set(logs)
    on = make_module(voices=2, loss={"scale_weight": 0.5, "rhythm_weight": 0.0})
    music = {"scale": torch.tensor(2.0), "rhythm": torch.tensor(float("nan")), "harmony_loss": torch.tensor(3.0)}
    assert on.weighted_music(music) == 0.5 * 2.0 + 3.0
