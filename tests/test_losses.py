"""Loss terms against values worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from rmvae import losses

BIG = 100.0  # a logit whose sigmoid is 1 in float32


def one_hot_pc(*classes):
    """Voices each on one pitch class at one step → pc (1, V, 1, 12)."""
    return F.one_hot(torch.tensor(classes), 12).float().reshape(1, len(classes), 1, 12)


@pytest.mark.parametrize("classes, expected", [
    ((0, 1), [1.0, 0.0, 0.0]),  # C, C#: a semitone, met once over the two ordered pairs
    ((0, 7), [0.0, 0.0, 0.0]),  # C, G: a fifth is consonant
    ((0, 6), [0.0, 0.0, 1.0]),  # C, F#: the tritone is met from both sides, halved
    ((0, 2), [0.0, 1.0, 0.0]),  # C, D: a tone
    ((0, 0), [0.0, 0.0, 0.0]),  # unison
])
def test_harmony_terms_two_voices_one_step(classes, expected):
    assert torch.equal(losses.harmony_terms(one_hot_pc(*classes)), torch.tensor([expected]))


def test_harmony_ignores_pairs_within_one_voice():
    pc = torch.zeros(1, 1, 1, 12)
    pc[0, 0, 0, [0, 1, 6]] = 1  # one voice spreading mass over dissonant classes
    assert torch.equal(losses.harmony_terms(pc), torch.zeros(1, 3))


def test_harmony_sums_steps_and_weights():
    pc = torch.cat([one_hot_pc(0, 1), one_hot_pc(0, 6), one_hot_pc(0, 1)], dim=2)  # (1, 2, 3, 12)
    assert torch.equal(losses.harmony_terms(pc), torch.tensor([[2.0, 0.0, 1.0]]))
    assert torch.allclose(losses.harmony_loss(pc, (0.5, 0.1, 3.0)), torch.tensor([2 * 0.5 + 3.0]))
    # value: (2 + 1) / (2 ordered pairs × 3 steps)
    assert torch.allclose(losses.harmony_value(pc), torch.tensor([0.5]))
    uniform = torch.full((1, 3, 4, 12), 1 / 12)
    assert torch.allclose(losses.harmony_value(uniform), torch.tensor([1 / 12 + 1 / 12 + 1 / 24]))


def test_mono_recon_hand_example():
    # P = 1: classes 0 (pitch), 1 (rest), 2 (hold). One sample, two voices, two steps.
    pitch_logits = torch.tensor([[[[1.0, 0.0], [0.5, -0.5]], [[3.0, 3.0], [3.0, 3.0]]]])  # (1, 2, 2, 2)
    hold_logits = torch.tensor([[[0.0, 2.0], [9.0, 9.0]]])  # (1, 2, 2)
    tokens = torch.tensor([[[0, 2], [1, 1]]])
    mask = torch.tensor([[1.0, 0.0]])  # the second voice does not count
    # step 0: truth pitch 0 → CE = log(e^1 + e^0) − 1, BCE(0, 0) = log 2
    # step 1: truth hold → BCE(2, 1) = log(1 + e^−2), no CE
    expected = (math.log(math.e + 1) - 1) + math.log(2) + math.log(1 + math.exp(-2))
    value = losses.mono_recon(pitch_logits, hold_logits, tokens, mask)
    assert value.shape == (1,)
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def test_mono_recon_sums_over_measures():
    pitch_logits, hold_logits = torch.randn(3, 4, 2, 16, 7), torch.randn(3, 4, 2, 16)
    tokens, mask = torch.randint(0, 8, (3, 4, 2, 16)), torch.ones(3, 4, 2)
    per_measure = [losses.mono_recon(pitch_logits[:, t], hold_logits[:, t], tokens[:, t], mask[:, t]) for t in range(4)]
    assert torch.allclose(losses.mono_recon(pitch_logits, hold_logits, tokens, mask), sum(per_measure))


def test_poly_recon_hand_example():
    activation_logits = torch.tensor([[[[0.0, 2.0]]]])  # (1, V=1, S=1, P=2)
    duration = torch.tensor([[[[3.0, 1.0]]]])
    target = torch.tensor([[[[[1.0, 4.0], [0.0, 0.0]]]]])  # pitch 0 active for 4, pitch 1 silent
    # BCE(0, 1) = log 2; BCE(2, 0) = log(1 + e^2); MSE only where active: (3 − 4)² = 1
    expected = math.log(2) + math.log(1 + math.exp(2)) + 1.0
    value = losses.poly_recon(activation_logits, duration, target, torch.ones(1, 1))
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def test_kl_divergence():
    assert math.isclose(losses.kl_divergence(torch.ones(1, 1), torch.zeros(1, 1)).item(), 0.5)
    # KL(N(0, 1) ‖ N(0, e²)) = ½ (2 − 0 + e^{−2} − 1)
    kl = losses.kl_divergence(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.full((1,), 2.0))
    assert math.isclose(kl.item(), 0.5 * (1 + math.exp(-2)), rel_tol=1e-6)
    assert losses.kl_divergence(torch.zeros(4, 3, 8), torch.zeros(4, 3, 8)).shape == (4, 3)


@pytest.mark.parametrize("share, beta", [(0.0, 0.0), (0.01, 0.0), (0.2, (0.2 - 0.01) / 0.39), (0.4, 1.0), (1.0, 1.0)])
def test_kl_weight(share, beta):
    assert math.isclose(losses.kl_weight(int(share * 1000), 1000), beta, abs_tol=1e-12)


def test_sounding_distribution_hold_copies_previous_step():
    pitch_logits = torch.tensor([[[2.0, 0.0, -1.0], [-3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]])  # (1, S=3, P+1=3)
    hold_logits = torch.tensor([[0.0, BIG, -BIG]])
    q = losses.sounding_distribution(pitch_logits, hold_logits)
    p = torch.softmax(pitch_logits, dim=-1)
    assert torch.allclose(q[0, 0], p[0, 0])  # q_{-1} := p_0
    assert torch.allclose(q[0, 1], q[0, 0])  # held: sounds as before
    assert torch.allclose(q[0, 2], p[0, 2])  # new onset
    half = torch.tensor([[0.0, 0.0]])  # hold probability 1/2 at step 1
    q = losses.sounding_distribution(pitch_logits[:, :2], half)
    assert torch.allclose(q[0, 1], 0.5 * p[0, 1] + 0.5 * p[0, 0])


def test_pitch_class_mass_folds_octaves_and_drops_rest():
    # low = 59 (B): indices 0..13 are B, C, C#, ..., B, C; index 14 is the rest.
    q = torch.zeros(1, 15)
    q[0, 1], q[0, 13], q[0, 0], q[0, 14] = 0.25, 0.25, 0.3, 0.2
    pc = losses.pitch_class_mass(q, low=59)
    expected = torch.zeros(1, 12)
    expected[0, 0], expected[0, 11] = 0.5, 0.3
    assert torch.allclose(pc, expected)


def test_scale_loss_truth_only_c():
    # Truth: every voice plays C (pitch index 0 with low = 60) then holds; prediction all on C.
    n_pitches, low = 24, 60
    tokens = torch.full((1, 2, 2, 16), n_pitches + 1)
    tokens[..., 0] = 0
    pc = torch.zeros(1, 2, 16, 12)
    pc[..., 0] = 0.75
    mass = 2 * 16 * 0.75
    assert math.isclose(losses.scale_loss(pc, tokens, torch.ones(1, 2, 2), low, n_pitches).item(), -mass)
    # Mass on D (absent from the truth) is penalised one for one.
    pc[..., 2] = 0.25
    assert math.isclose(losses.scale_loss(pc, tokens, torch.ones(1, 2, 2), low, n_pitches).item(),
                        -mass + 2 * 16 * 0.25)
    # A masked-out truth voice's notes do not count: here the truth becomes empty.
    assert math.isclose(losses.scale_loss(pc, tokens, torch.zeros(1, 2, 2), low, n_pitches).item(), 2 * 16 * 1.0)


def test_scale_loss_counts_are_not_normalised():
    # Two C's and one E: both classes get weight −1 regardless of the counts.
    n_pitches, low = 12, 60
    tokens = torch.full((1, 1, 1, 16), n_pitches)
    tokens[0, 0, 0, [0, 4, 8]] = torch.tensor([0, 0, 4])
    pc = torch.zeros(1, 1, 16, 12)
    pc[0, 0, :, 4] = 1.0
    assert math.isclose(losses.scale_loss(pc, tokens, torch.ones(1, 1, 1), low, n_pitches).item(), -16.0)


def test_rhythm_loss_hand_case():
    # P = 1 (classes: pitch, rest, hold). One voice predicted at four steps (S = 4).
    # Truth (two measures): onsets at step 0 (measure 0) and step 2 (measure 1).
    truth = torch.tensor([[[[0, 2, 1, 1]], [[1, 1, 0, 2]]]])  # (1, T'=2, V=1, S=4)
    # Predicted p_rest per step: 0, 1/2, 1/(1+e), 1/2; hold probability: 0, 0, 1/2, 0.
    pitch_logits = torch.tensor([[[[0.0, -BIG], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]])
    hold_logits = torch.tensor([[[-BIG, -BIG, 0.0, -BIG]]])
    onset = [1.0, 0.5, 0.5 * (1 - 1 / (1 + math.e)), 0.5]  # (1 − h)(1 − p_rest)
    weights = [-1.0, 1.0, -1.0, 1.0]
    expected = sum(w * o for w, o in zip(weights, onset))
    value = losses.rhythm_loss(pitch_logits, hold_logits, truth, torch.ones(1, 2, 1))
    assert math.isclose(value.item(), expected, rel_tol=1e-6)
    # Masking the second truth measure removes the step-2 reward.
    mask = torch.tensor([[[1.0], [0.0]]])
    expected_masked = -onset[0] + onset[1] + onset[2] + onset[3]
    assert math.isclose(losses.rhythm_loss(pitch_logits, hold_logits, truth, mask).item(), expected_masked,
                        rel_tol=1e-6)


def test_poly_music_losses_run():
    activation_logits = torch.full((2, 3, 16, 12), -BIG)
    activation_logits[:, :, 0, 0] = BIG  # every voice starts a C at step 0
    truth = torch.zeros(2, 1, 3, 16, 12, 2)
    truth[:, :, :, 0, 0, 0] = 1
    pc = losses.poly_pitch_class_mass(activation_logits, low=60)
    mask = torch.ones(2, 1, 3)
    assert torch.allclose(losses.scale_loss(pc, truth, mask, 60, 12), torch.full((2,), -3.0))
    assert torch.allclose(losses.poly_rhythm_loss(activation_logits, truth, mask), torch.full((2,), -3.0))
    assert losses.harmony_terms(pc).shape == (2, 3)


def test_music_losses_are_differentiable():
    pitch_logits = torch.randn(2, 4, 16, 25, requires_grad=True)
    hold_logits = torch.randn(2, 4, 16, requires_grad=True)
    tokens, mask = torch.randint(0, 26, (2, 3, 4, 16)), torch.ones(2, 3, 4)
    pc = losses.pitch_class_mass(losses.sounding_distribution(pitch_logits, hold_logits), low=48)
    total = (losses.scale_loss(pc, tokens, mask, 48, 24) + losses.rhythm_loss(pitch_logits, hold_logits, tokens, mask)
             + losses.harmony_loss(pc, (0.01, 0.01, 0.01))).sum()
    total.backward()
    assert torch.isfinite(pitch_logits.grad).all() and pitch_logits.grad.abs().sum() > 0


def test_free_bits_hand_example():
    """Two samples, two dimensions, λ = 0.5: batch means 0.2 and 1.5 → the penalty Σ max(λ, m) = 0.5 + 1.5."""
    kl = torch.tensor([[0.1, 2.0], [0.3, 1.0]], requires_grad=True)
    excess = losses.free_bits_excess(kl, 0.5)
    assert excess.item() == pytest.approx(0.3)
    penalty = kl.sum(dim=-1).mean() + excess
    assert penalty.item() == pytest.approx(2.0)
    penalty.backward()
    # The dimension under λ costs a constant: no gradient; the other one keeps its batch-mean gradient.
    assert torch.allclose(kl.grad, torch.tensor([[0.0, 0.5], [0.0, 0.5]]))
    assert losses.free_bits_excess(kl, 0.0).item() == 0.0
