"""RMVAE shapes, posterior/prior equivalences, incremental API and an overfit check."""
import itertools
import types

import pytest
import torch
from torch import nn

from rmvae import losses
from rmvae.config import STEPS_PER_MEASURE, Config, LossConfig, ModelConfig
from rmvae.profiles import THESIS_DESIGN
from rmvae.model import RMVAE, layers
from rmvae.model.poe import product_of_experts
from rmvae.model.rmvae import Teacher
from rmvae.model.writer import WriterContext
from rmvae.module import RMVAEModule

S = STEPS_PER_MEASURE
B, T, V, P = 2, 3, 4, 12
SIZES = [("small", 1.0), ("medium", 0.25)]
# The poly encoding has only the factorised decoder; mono runs both measure decoders.
CASES = [(size, scale, encoder, encoding, decoder) for (size, scale), encoder, (encoding, decoder)
         in itertools.product(SIZES, ("rnn", "conv"),
                              (("mono", "factorised"), ("mono", "autoregressive"), ("poly", "factorised")))]
# The measure writer in each context it has: over the whole window (the default) or per measure.
WRITER = {"measure_decoder": "autoregressive", "writer_context": "window"}
MEASURE_WRITER = {"measure_decoder": "autoregressive", "writer_context": "measure"}
FACTORISED = {"measure_decoder": "factorised"}
DECODERS = {"factorised": FACTORISED, "writer-window": WRITER, "writer-measure": MEASURE_WRITER}
# The thesis's model design (profiles.THESIS_DESIGN's model keys) as ModelConfig fields: the temporal
# LSTM over sampled PoE/RPoE latents, N(0, I) priors, z-only decoders. The encoder kind is left
# to each test's own parameter (the thesis's is "rnn").
THESIS_MODEL = {key.split(".", 1)[1]: value for key, value in THESIS_DESIGN.items()
                if key.startswith("model.") and key != "model.encoder"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread avoids oversubscribing a shared CPU (several times faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(size="small", scale=1.0, encoder="rnn", encoding="mono", **overrides):
    torch.manual_seed(0)
    config = ModelConfig(size=size, width_scale=scale, encoder=encoder, z_dim=8, **overrides)
    return RMVAE(config, n_voices=V, n_pitches=P, encoding=encoding)


def random_inputs(encoding, batch=B, measures=T, generator=None):
    """Inputs (B, T, V, S[, P, 2]) and a target measure (B, V, S[, P, 2])."""
    shape = (batch, measures + 1, V, S)
    if encoding == "mono":
        x = torch.randint(0, P + 2, shape, generator=generator)
    else:
        x = torch.zeros(*shape, P, 2)
        active = torch.rand(*shape, P, generator=generator) < 0.1
        x[..., 0] = active.float()
        x[..., 1] = active * torch.randint(1, 8, (*shape, P), generator=generator)
    return x[:, :measures], x[:, measures]


@pytest.mark.parametrize("size, scale, encoder, encoding, decoder", CASES)
def test_forward_shapes(size, scale, encoder, encoding, decoder):
    model = make_model(size, scale, encoder, encoding, measure_decoder=decoder)
    inputs, target = random_inputs(encoding)
    mask = torch.ones(B, T, V)
    target_mask = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0]])
    out = model(inputs, mask, target, target_mask)
    Z = model.config.z_dim
    assert out.expert_mu.shape == out.expert_logvar.shape == (B, T, V, Z)
    assert out.post_mu.shape == out.post_logvar.shape == out.z.shape == (B, T, Z)
    for name in ("prior_mu", "prior_logvar", "target_mu", "target_logvar", "target_z"):
        assert getattr(out, name).shape == (B, Z), name
    if encoding == "mono":
        assert out.recon.pitch_logits.shape == (B, T, V, S, P + 1)
        assert out.recon.hold_logits.shape == (B, T, V, S)
        assert out.prediction.pitch_logits.shape == (B, V, S, P + 1)
        assert out.prediction.hold_logits.shape == (B, V, S)
        assert out.prediction.activation_logits is None and out.prediction.duration is None
        assert model.decode_tokens(out.prediction).shape == (B, V, S)
    else:
        assert out.recon.activation_logits.shape == out.recon.duration.shape == (B, T, V, S, P)
        assert out.prediction.activation_logits.shape == out.prediction.duration.shape == (B, V, S, P)
        assert (out.prediction.duration >= 0).all()
        assert model.decode_tokens(out.prediction).shape == (B, V, S, P, 2)
    # Sample 1 has no known target voice: its target posterior is the prediction.
    assert torch.equal(out.target_mu[1], out.prior_mu[1]) and torch.equal(out.target_logvar[1], out.prior_logvar[1])
    assert torch.all(out.target_logvar[0] < out.prior_logvar[0] + 1e-6)  # known voices add precision
    loss = out.prediction.pitch_logits.sum() if encoding == "mono" else out.prediction.duration.sum()
    loss.backward()  # gradients reach every voice's encoder through the target PoE
    assert model.encoders[0].to_mu.weight.grad is not None


@pytest.mark.parametrize("design, rpoe", [("thesis", True), ("thesis", False), ("default", True)],
                         ids=["thesis-rpoe", "thesis-poe", "default"])  # rpoe only acts under N(0, I) priors
@pytest.mark.parametrize("encoder", ["rnn", "conv", "fc"])
def test_left_padding_gives_prior(design, rpoe, encoder):
    """A measure with no voice present has its prior as posterior: N(0, I) in the thesis design
    (PoE/RPoE, nothing before it has a voice either); under the default design the temporal
    prior predicted from the states before it, where the LSTM has read only zeros and the mask."""
    model = make_model(encoder=encoder, rpoe=rpoe, **(THESIS_MODEL if design == "thesis" else {})).eval()
    inputs, _ = random_inputs("mono", measures=5)
    mask = torch.ones(B, 5, V)
    mask[:, :2] = 0  # two empty measures in front of the window
    mask[1, 2] = 0
    out = model(inputs, mask, sample=False)
    if design == "thesis":
        assert out.input_prior_mu is None and out.input_prior_logvar is None  # N(0, I)
        assert torch.all(out.post_mu[:, :2] == 0) and torch.all(out.post_logvar[:, :2] == 0)
        assert torch.all(out.post_mu[1, 2] == 0) and torch.all(out.post_logvar[1, 2] == 0)
        assert not torch.all(out.post_mu[:, 3] == 0)
    else:
        # The temporal priors of the empty state sequence, computed here from the LSTM itself:
        # measure 0 from the zero state, measure t from the state after t empty measures (the
        # LSTM reads zeroed expert means and an all-zero mask).
        Z = model.config.z_dim
        with torch.no_grad():
            empty_states, _ = model.temporal(torch.zeros(1, 2, V * Z + V))  # (1, 2, W)
            before = torch.cat([torch.zeros(1, 1, model.state_size), empty_states], dim=1)[0]  # (3, W)
            empty_mu, empty_logvar = model.to_prior_mu(before), model.to_prior_logvar(before)  # (3, Z)
        assert not torch.all(empty_mu[0] == 0)  # not N(0, I): the prior of the empty state is learnt
        for b in range(B):
            assert torch.allclose(out.input_prior_mu[b, :2], empty_mu[:2], atol=1e-6)
            assert torch.allclose(out.input_prior_logvar[b, :2], empty_logvar[:2], atol=1e-6)
        assert torch.allclose(out.input_prior_mu[1, 2], empty_mu[2], atol=1e-6)
        assert torch.allclose(out.input_prior_logvar[1, 2], empty_logvar[2], atol=1e-6)
        # An empty measure's posterior is its prior, exactly.
        assert torch.equal(out.post_mu[:, :2], out.input_prior_mu[:, :2])
        assert torch.equal(out.post_logvar[:, :2], out.input_prior_logvar[:, :2])
        assert torch.equal(out.post_mu[1, 2], out.input_prior_mu[1, 2])
        assert torch.equal(out.post_logvar[1, 2], out.input_prior_logvar[1, 2])
        assert not torch.allclose(out.post_mu[:, 3], out.input_prior_mu[:, 3])  # present voices move it
        # A window with no voice at all predicts the temporal prior after the empty sequence.
        empty = model(inputs, torch.zeros(B, 5, V), sample=False)
        with torch.no_grad():
            all_empty, _ = model.temporal(torch.zeros(1, 5, V * Z + V))
            expected_mu, expected_logvar = model.prior(all_empty[0, -1])
        assert torch.allclose(empty.prior_mu, expected_mu.expand(B, Z), atol=1e-6)
        assert torch.allclose(empty.prior_logvar, expected_logvar.expand(B, Z), atol=1e-6)
    # The empty measures carry nothing into the temporal model (z or expert means · present = 0),
    # so their content does not matter.
    scrambled, _ = random_inputs("mono", measures=5, generator=torch.Generator().manual_seed(5))
    scrambled[:, 2:] = inputs[:, 2:]
    scrambled[1, 2] = torch.randint(0, P + 2, (V, S))
    again = model(scrambled, mask, sample=False)
    assert torch.allclose(again.prior_mu, out.prior_mu, atol=1e-6)
    assert torch.allclose(again.prior_logvar, out.prior_logvar, atol=1e-6)
    assert torch.allclose(again.state, out.state, atol=1e-6)


def test_empty_target_mask_equals_no_target():
    model = make_model().eval()
    inputs, target = random_inputs("mono")
    mask = torch.ones(B, T, V)
    plain = model(inputs, mask, sample=False)
    zeros = model(inputs, mask, target, torch.zeros(B, V), sample=False)
    assert torch.equal(plain.target_mu, zeros.target_mu) and torch.equal(plain.target_mu, plain.prior_mu)
    known = model(inputs, mask, target, torch.ones(B, V), sample=False)
    target_mu, target_logvar = model.encode_measure(model.features(target))
    expected = product_of_experts(target_mu, target_logvar, torch.ones(B, V), known.prior_mu, known.prior_logvar)
    assert torch.allclose(known.target_mu, expected[0], atol=1e-6)
    assert torch.allclose(known.target_logvar, expected[1], atol=1e-6)


@pytest.mark.parametrize("encoding", ["mono", "poly"])
def test_decode_tokens_greedy_is_deterministic(encoding):
    model = make_model(encoding=encoding, **FACTORISED).eval()  # the factorised heads' decoding
    inputs, _ = random_inputs(encoding)
    out = model(inputs, torch.ones(B, T, V), sample=False)
    first, second = model.decode_tokens(out.prediction), model.decode_tokens(out.prediction)
    assert torch.equal(first, second)
    assert torch.equal(first, model.decode_tokens(model(inputs, torch.ones(B, T, V), sample=False).prediction))
    if encoding == "mono":
        assert first.dtype == torch.int64 and first.min() >= 0 and first.max() <= P + 1
    else:
        assert set(first[..., 0].unique().tolist()) <= {0.0, 1.0}
        assert torch.all((first[..., 1] >= 1) == (first[..., 0] == 1))


def test_decode_tokens_rules():
    model = make_model(**FACTORISED)  # the factorised heads' decoding
    pitch_logits = torch.full((1, V, S, P + 1), -5.0)
    hold_logits = torch.full((1, V, S), -5.0)
    pitch_logits[..., 3] = 5.0  # pitch 3 everywhere...
    pitch_logits[0, 0, 4, P] = 10.0  # ...but a rest at step 4 of voice 0
    hold_logits[0, 0, 5:8] = 5.0  # holds after the rest → rests
    hold_logits[0, 1, 1:4] = 5.0  # holds after a note stay holds
    with pytest.raises(ValueError, match="temporal state"):  # these decoders read z and the state
        model.decode(torch.zeros(1, 8))
    decoded = model.decode(torch.zeros(1, 8), torch.zeros(1, model.state_size))
    assert decoded.pitch_logits.shape == pitch_logits.shape and decoded.hold_logits.shape == hold_logits.shape
    decoded.pitch_logits, decoded.hold_logits = pitch_logits, hold_logits
    tokens = model.decode_tokens(decoded)
    assert tokens[0, 0, :9].tolist() == [3, 3, 3, 3, P, P, P, P, 3]
    assert tokens[0, 1, :5].tolist() == [3, P + 1, P + 1, P + 1, 3]
    # top_k = 1 with a confident hold head samples what greedy decodes.
    generator = torch.Generator().manual_seed(0)
    hold_logits_sure = hold_logits.clone()
    hold_logits_sure[hold_logits_sure < 0] = -50.0
    hold_logits_sure[hold_logits_sure > 0] = 50.0
    decoded.hold_logits = hold_logits_sure
    sampled = model.decode_tokens(decoded, temperature=1.0, top_k=1, generator=generator)
    assert torch.equal(sampled, tokens)


@pytest.mark.parametrize("design, encoder, encoding, rpoe", [
    ("thesis", "rnn", "mono", True), ("thesis", "conv", "poly", True), ("thesis", "rnn", "mono", False),
    ("factorised", "fc", "mono", True), ("factorised", "conv", "poly", True), ("factorised", "rnn", "mono", True),
    ("writer", "fc", "mono", True), ("writer", "rnn", "mono", True),
    ("direct", "fc", "mono", True), ("direct-writer", "fc", "mono", True)])
def test_incremental_api_matches_forward(design, encoder, encoding, rpoe):
    """Experts cached one measure at a time give forward's predicted Gaussian and temporal state,
    and decoding the predicted mean with that state gives forward's prediction (the band player).

    The writer is the one the band supports, ``writer_context="measure"`` (a window writer runs on
    over the window's tokens, which the band does not cache): it scores the target after the last
    input measure's visible voices, and writes the same measure from either side's latent and state."""
    design_fields = {"thesis": THESIS_MODEL, "factorised": FACTORISED, "writer": MEASURE_WRITER,
                     "direct": {"kind": "direct", **FACTORISED},
                     "direct-writer": {"kind": "direct", **MEASURE_WRITER}}[design]
    model = make_model(encoder=encoder, encoding=encoding, rpoe=rpoe, **design_fields).eval()
    writes = model.writer is not None
    inputs, target = random_inputs(encoding, measures=4)
    mask = torch.ones(B, 4, V)
    mask[0, 0] = 0
    mask[1, :, 2] = 0
    with torch.inference_mode():
        out = model(inputs, mask, target if writes else None, sample=False)  # a writer scores a given target
        experts = [model.encode_measure(model.features(inputs[:, t])) for t in range(4)]  # one measure at a time
        mu = torch.stack([e[0] for e in experts], dim=1)
        logvar = torch.stack([e[1] for e in experts], dim=1)
        prior_mu, prior_logvar, state = model.predict_from_experts(mu, logvar, mask)
        if writes:
            # What it writes the target after: the last input measure, a hidden voice unknown (class P + 2).
            previous = torch.where(mask[:, -1, :, None].bool(), inputs[:, -1], torch.full_like(inputs[:, -1], P + 2))
            decoded = model.decode(prior_mu, state, target, WriterContext(previous))
            written = model.write(prior_mu, state, WriterContext(previous))
            assert torch.equal(written, model.write(out.target_z, out.state, out.target_context))
            assert torch.equal(out.target_context.previous, previous) and out.target_context.lstm is None
        else:
            decoded = model.decode(prior_mu, state)
    assert state.shape == out.state.shape == (B, model.state_size)
    assert torch.allclose(state, out.state, atol=1e-5)
    if design.startswith("direct"):  # no latents: nothing predicted but the state
        assert prior_mu is None and prior_logvar is None and out.prior_mu is None
    else:
        assert torch.allclose(prior_mu, out.prior_mu, atol=1e-5)
        assert torch.allclose(prior_logvar, out.prior_logvar, atol=1e-5)
        assert torch.allclose(out.target_mu, prior_mu, atol=1e-5)
    for name, value in vars(out.prediction).items():
        if value is None:
            assert getattr(decoded, name) is None, name
        else:
            assert torch.allclose(getattr(decoded, name), value, atol=1e-5), name


def test_voices_do_not_share_weights():
    model = make_model(**FACTORISED)  # one decoder per voice
    assert len(model.encoders) == len(model.decoders) == V
    assert not torch.equal(model.encoders[0].to_mu.weight, model.encoders[1].to_mu.weight)
    assert hasattr(model.decoders[0], "to_pitch") and hasattr(model.decoders[0], "to_hold")
    assert hasattr(make_model(encoding="poly", **FACTORISED).decoders[0], "to_activation")


def test_a_measure_writer_needs_the_mono_encoding():
    with pytest.raises(ValueError, match="mono"):
        make_model(encoding="poly", **WRITER)


def structured_windows(n_windows=8, measures=4, n_pitches=24, seed=0):
    """Windows whose voices repeat a random one-measure motif (notes of 2, 4 or 8 steps);
    some windows start with left-padded empty measures. The target is the motif again."""
    generator = torch.Generator().manual_seed(seed)
    rest, hold = n_pitches, n_pitches + 1
    motifs = torch.full((n_windows, V, S), hold)
    for w in range(n_windows):
        for v in range(V):
            step = 0
            while step < S:
                length = [2, 4, 8][int(torch.randint(0, 3, (1,), generator=generator))]
                length = min(length, S - step)
                is_rest = torch.rand(1, generator=generator).item() < 0.15
                motifs[w, v, step] = rest if is_rest else int(torch.randint(0, n_pitches, (1,), generator=generator))
                if is_rest:
                    motifs[w, v, step:step + length] = rest
                step += length
    inputs = motifs.unsqueeze(1).repeat(1, measures, 1, 1)  # (W, T, V, S)
    mask = torch.ones(n_windows, measures, V)
    for w in range(n_windows):
        pad = w % 3  # 0, 1 or 2 empty measures in front
        mask[w, :pad] = 0
        inputs[w, :pad] = rest
    return inputs, mask, motifs


@pytest.mark.parametrize("decoder", ["factorised", "writer-window"])
def test_overfit_one_batch(decoder):
    """The next measure of one batch is learnt: greedy decoding (factorised heads) or greedy writing
    from the past alone (the writer, trained teacher-forced on the target) gives the target."""
    torch.manual_seed(0)
    n_pitches = 24
    config = ModelConfig(size="small", width_scale=0.5, z_dim=32, **DECODERS[decoder])
    model = RMVAE(config, n_voices=V, n_pitches=n_pitches, encoding="mono")
    inputs, mask, target = structured_windows(n_pitches=n_pitches)
    voice_mask = torch.ones(target.shape[:2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    teacher = target if model.writer is not None else None
    accuracy = 0.0
    for step in range(300):
        model.train()
        out = model(inputs, mask, teacher, sample=False, reconstruct=False)
        loss = losses.mono_recon(out.prediction.pitch_logits, out.prediction.hold_logits, target, voice_mask).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            model.eval()
            with torch.inference_mode():
                past = model(inputs, mask, sample=False, reconstruct=False)  # no target: the past only
                if model.writer is not None:
                    tokens = model.write(past.target_z, past.state, past.target_context)
                else:
                    tokens = model.decode_tokens(past.prediction)
            accuracy = (tokens == target).float().mean().item()
            if accuracy > 0.95:
                break
    assert accuracy > 0.95, f"token accuracy {accuracy:.3f} after {step + 1} steps (loss {loss.item():.2f})"


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_reconstructing_chosen_measures_equals_picking_from_all(decoder):
    """``recon_measures`` decodes exactly the chosen measures' latents, in the given order (a
    writer scores the window's tokens it is given, each measure after its own context)."""
    model = make_model(**DECODERS[decoder]).eval()
    inputs, target = random_inputs("mono", measures=4)
    mask = torch.ones(B, 4, V)
    mask[1, 0, 2] = 0  # a hidden voice-measure: unknown in the context of the measure after it
    chosen = torch.tensor([[3, 0], [1, 2]])  # (B, k)
    teacher = Teacher(inputs, target)
    with torch.inference_mode():
        mu, logvar = model.encode(model.features(inputs))
        full = model.from_experts(mu, logvar, mask, sample=False, teacher=teacher)
        picked = model.from_experts(mu, logvar, mask, sample=False, recon_measures=chosen, teacher=teacher)
    for b in range(B):
        for j, t in enumerate(chosen[b].tolist()):
            assert torch.allclose(picked.recon.pitch_logits[b, j], full.recon.pitch_logits[b, t], atol=1e-5)
            assert torch.allclose(picked.recon.hold_logits[b, j], full.recon.hold_logits[b, t], atol=1e-5)
    assert torch.allclose(picked.prediction.pitch_logits, full.prediction.pitch_logits, atol=1e-5)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_sampled_input_reconstruction_is_unbiased(monkeypatch, decoder):
    """With k = 1 of T measures, scaled by T, the average over the T possible draws is the full sum.

    Exact enumeration instead of Monte Carlo: each draw is forced in turn; sampling, dropout and
    the subset terms are switched off so that only the input-reconstruction term differs.
    """
    measures = 4
    config = Config(model=ModelConfig(size="small", z_dim=8, dropout_fc=0.0, dropout_rnn=0.0, writer_dropout=0.0,
                                      **DECODERS[decoder]),
                    loss=LossConfig(n_subsets=0, recon_inputs_measures=1, elbo_terms="full"))
    torch.manual_seed(0)
    module = RMVAEModule(config.to_dict(), {"encoding": "mono", "low": 40, "high": 40 + P - 1, "n_voices": V})
    inputs, target = random_inputs("mono", measures=measures, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, measures, V, dtype=torch.bool)
    mask[0, 0] = False  # a left-padded measure: it counts zero either way
    batch = {"inputs": inputs, "input_mask": mask, "target": target, "target_mask": torch.ones(B, V, dtype=torch.bool)}
    module.train()
    module.model.from_experts = _no_sampling(module.model.from_experts)
    with torch.no_grad():
        monkeypatch.setattr(module, "recon_measure_sample", lambda *args: None)
        _, full_logs, _ = module.model_step(batch, "train")
        draws = []
        for t in range(measures):
            monkeypatch.setattr(module, "recon_measure_sample", lambda *args, t=t: torch.full((B, 1), t))
            _, logs, _ = module.model_step(batch, "train")
            draws.append(logs["recon_inputs"])
    assert all(not torch.isclose(d, full_logs["recon_inputs"]) for d in draws)  # each draw alone is off...
    assert torch.isclose(torch.stack(draws).mean(), full_logs["recon_inputs"], rtol=1e-5)  # ...their mean is not


def test_elbo_terms_full_trains_the_full_set_term_only():
    info = {"encoding": "mono", "low": 40, "high": 40 + P - 1, "n_voices": V}
    subsampled = RMVAEModule(Config(model=ModelConfig(size="small", z_dim=8),
                                    loss=LossConfig(n_subsets=2)).to_dict(), info)
    names = [name for name, _ in subsampled.elbo_masks(B, "cpu")]
    assert names == ["full"] + [f"voice{v}" for v in range(V)] + ["subset", "subset"]
    full = RMVAEModule(Config(model=ModelConfig(size="small", z_dim=8),
                              loss=LossConfig(n_subsets=2, elbo_terms="full")).to_dict(), info)
    (name, mask), = full.elbo_masks(B, "cpu")
    assert name == "full" and mask.all()


def _no_sampling(from_experts):
    def wrapped(*args, **kwargs):
        kwargs["sample"] = False
        return from_experts(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("decoder", ["factorised", "writer-measure"])
def test_recon_measure_sample_draws_distinct_measures(decoder):
    config = Config(model=ModelConfig(size="small", z_dim=8, **DECODERS[decoder]),
                    loss=LossConfig(recon_inputs_measures=3))
    module = RMVAEModule(config.to_dict(), {"encoding": "mono", "low": 40, "high": 40 + P - 1, "n_voices": V})
    module.train()
    torch.manual_seed(0)
    picks = module.recon_measure_sample(500, 8, "cpu")  # (500, 3)
    assert picks.shape == (500, 3)
    assert all(len(set(row)) == 3 for row in picks.tolist())  # without replacement
    counts = torch.bincount(picks.flatten(), minlength=8).float()
    assert counts.min() > 0.7 * 1500 / 8 and counts.max() < 1.3 * 1500 / 8  # uniform over the 8 measures
    module.eval()
    assert module.recon_measure_sample(500, 8, "cpu") is None  # validation reconstructs every measure


def test_a_window_writer_reconstructs_every_measure_in_training():
    """Its one pass over the window scores every input measure: no measures are drawn."""
    config = Config(model=ModelConfig(size="small", z_dim=8, **WRITER), loss=LossConfig(recon_inputs_measures=3))
    module = RMVAEModule(config.to_dict(), {"encoding": "mono", "low": 40, "high": 40 + P - 1, "n_voices": V})
    module.train()
    assert module.recon_measure_sample(500, 8, "cpu") is None


def test_lstm_layer_matches_nn_lstm():
    """The private kernel (layers.lstm_layer), layer by layer, gives nn.LSTM's outputs and states."""
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, num_layers=2, bidirectional=True)
    x, zeros = torch.randn(S, 7, 6), torch.zeros(2, 7, 5)
    out, (h_n, c_n) = lstm(x)
    first, h0, c0 = layers.lstm_layer(lstm, 0, x, (zeros, zeros))
    second, h1, c1 = layers.lstm_layer(lstm, 1, first, (zeros, zeros))
    for got, want in ((second, out), (torch.cat([h0, h1]), h_n), (torch.cat([c0, c1]), c_n)):
        assert torch.allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("missing", ["kernel", "weights"])
def test_run_lstm_falls_back_to_the_public_call(monkeypatch, missing):
    """Without torch._VF.lstm or nn.LSTM._flat_weights, run_lstm (train mode, dropout) gives the same numbers
    (the private path would raise AttributeError: what runs is the public fallback)."""
    lstm = nn.LSTM(6, 5, num_layers=3, batch_first=True, bidirectional=True, dropout=0.04)
    x = torch.randn(7, S, 6)
    torch.manual_seed(1)
    private = layers.run_lstm(lstm, x)
    if missing == "kernel":
        monkeypatch.setattr(torch, "_VF", types.SimpleNamespace())  # nn.LSTM keeps its own reference
    else:
        monkeypatch.delattr(lstm, "_flat_weights")
    torch.manual_seed(1)
    fallback = layers.run_lstm(lstm, x)
    for a, b in ((private[0], fallback[0]), *zip(private[1], fallback[1])):
        assert torch.equal(a, b)
