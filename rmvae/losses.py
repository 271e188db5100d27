"""Loss terms of the objective (docs/design.md §3), as pure functions.

Every loss returns one value per sample, shape ``(B,)``, summed over steps, voices, classes
and latent dimensions; the caller averages over the batch, so weights compare across sizes.
Shapes follow the legend in :mod:`rmvae.model`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from rmvae.config import LossConfig

HARMONY_INTERVALS = (1, 2, 6)  # semitone, tone, tritone (in pitch classes 1 ≡ 11, 2 ≡ 10)


def _per_sample(x: Tensor) -> Tensor:
    """Sum every dimension but the first (batch)."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


# --- reconstruction -------------------------------------------------------------------------


def mono_recon(pitch_logits: Tensor, hold_logits: Tensor, tokens: Tensor, voice_mask: Tensor) -> Tensor:
    """Reconstruction NLL of monophonic tokens (docs/design.md §1.5, the thesis's split heads).

    BCE of the note_continue logit against "the truth is a hold" at every step, plus the
    cross-entropy of pitches+rest at steps whose truth is not a hold (a new pitch or a rest).

    Args:
        pitch_logits: ``(B, [T,] V, S, P+1)``.
        hold_logits: ``(B, [T,] V, S)``.
        tokens: ``(B, [T,] V, S)`` int, classes 0..P+1 (P+1 = hold).
        voice_mask: ``(B, [T,] V)``, 1 = the voice counts.

    Returns:
        ``(B,)``, summed over steps, voices (and measures).
    """
    n_pitches = pitch_logits.shape[-1] - 1
    if hold_logits.shape != tokens.shape or pitch_logits.shape[:-1] != tokens.shape:
        raise ValueError(f"shapes do not match: pitch {tuple(pitch_logits.shape)}, hold {tuple(hold_logits.shape)}, "
                         f"tokens {tuple(tokens.shape)}")
    tokens = tokens.long()
    is_hold = tokens == n_pitches + 1
    hold_nll = F.binary_cross_entropy_with_logits(hold_logits, is_hold.float(), reduction="none")
    # Holds get some valid class index; their cross-entropy is masked out below.
    pitch_nll = F.cross_entropy(pitch_logits.reshape(-1, n_pitches + 1), tokens.clamp(max=n_pitches).reshape(-1),
                                reduction="none").reshape(tokens.shape)
    per_step = hold_nll + pitch_nll * (~is_hold)
    return _per_sample(per_step.sum(dim=-1) * voice_mask.to(per_step.dtype))


def poly_recon(activation_logits: Tensor, duration: Tensor, target: Tensor, voice_mask: Tensor) -> Tensor:
    """Reconstruction loss of the polyphonic encoding: BCE on every activation + MSE on durations of active notes.

    Args:
        activation_logits: ``(B, [T,] V, S, P)``.
        duration: ``(B, [T,] V, S, P)`` predicted lengths (sixteenths).
        target: ``(B, [T,] V, S, P, 2)`` activation (0/1) and duration.
        voice_mask: ``(B, [T,] V)``.

    Returns:
        ``(B,)``.
    """
    if target.shape[:-1] != activation_logits.shape or duration.shape != activation_logits.shape:
        raise ValueError(f"shapes do not match: activation {tuple(activation_logits.shape)}, "
                         f"duration {tuple(duration.shape)}, target {tuple(target.shape)}")
    active, true_duration = target[..., 0].float(), target[..., 1].float()
    bce = F.binary_cross_entropy_with_logits(activation_logits, active, reduction="none")
    mse = (duration - true_duration) ** 2 * active
    per_voice = (bce + mse).sum(dim=(-1, -2))  # over pitches and steps
    return _per_sample(per_voice * voice_mask.to(per_voice.dtype))


# --- KL and annealing -----------------------------------------------------------------------


def kl_divergence(mu: Tensor, logvar: Tensor, prior_mu: Tensor | None = None,
                  prior_logvar: Tensor | None = None, per_dim: bool = False) -> Tensor:
    """KL(N(mu, e^logvar) ‖ N(prior_mu, e^prior_logvar)) summed over Z; the prior defaults to N(0, I).

    KL = ½ Σ_z [log σ_p² − log σ_q² + (σ_q² + (μ_q − μ_p)²) / σ_p² − 1].

    Returns:
        ``(...,)``: the input shape without its last (Z) dimension; with ``per_dim`` the
        terms of the sum, ``(..., Z)``.
    """
    if prior_mu is None:
        prior_mu = torch.zeros_like(mu)
    if prior_logvar is None:
        prior_logvar = torch.zeros_like(logvar)
    # exp(logvar − prior_logvar) rather than exp(logvar)·exp(−prior_logvar): exactly 1 when the two
    # Gaussians are equal, so KL(q‖q) is 0, never a rounding error below it.
    kl = 0.5 * (prior_logvar - logvar + torch.exp(logvar - prior_logvar) + (mu - prior_mu) ** 2 * torch.exp(-prior_logvar) - 1)
    return kl if per_dim else kl.sum(dim=-1)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, e^logvar) summed over the last (Z) dimension; broadcasts over leading ones."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(dim=-1)


ACTIVE_UNIT_VARIANCE = 0.01  # Burda et al. 2016's threshold


def active_units(count: Tensor, total: Tensor, squares: Tensor, threshold: float = ACTIVE_UNIT_VARIANCE) -> Tensor:
    """Active units (Burda et al. 2016): latent dimensions whose posterior mean varies over the
    data, Var_x(E_q[z_u | x]) > ``threshold``, from running sums over the data per dimension
    ``(Z,)``: the count, Σ m and Σ m² of the posterior means m (population variance)."""
    variance = squares / count - (total / count) ** 2
    return (variance > threshold).sum()


def free_bits_excess(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """What free bits (Kingma et al. 2016) add to a KL penalty: Σ max(λ, m) − m over dimensions.

    ``m`` is the batch mean of each latent dimension's KL (``kl_per_dim (B, ..., Z)``, averaged
    over B). Added to the batch-mean KL it turns the penalty into Σ max(λ, m): a dimension
    whose average KL is under λ nats costs a constant λ, so its gradient vanishes and the
    encoder can put that much information into it for free, which keeps the KL term from
    erasing the latents (posterior collapse) before the decoders have learnt to use them.
    """
    mean = kl_per_dim.mean(dim=0)
    return torch.relu(free_bits - mean).sum()


def kl_weight(step: int, total_steps: int, start: float = LossConfig.kl_start, end: float = LossConfig.kl_end) -> float:
    """β of KL annealing (docs/design.md §3.3; the defaults are the config's): 0 before ``start``·total,
    linear to 1 at ``end``·total, then 1."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0; got {total_steps}")
    if not 0 <= start <= end:
        raise ValueError(f"need 0 ≤ start ≤ end; got start={start}, end={end}")
    progress = step / total_steps
    if progress >= end:
        return 1.0
    if progress < start:
        return 0.0
    return (progress - start) / (end - start)


# --- music-theory losses (docs/design.md §3.5)-------------------------------------------------------


def sounding_distribution(pitch_logits: Tensor, hold_logits: Tensor) -> Tensor:
    """Distribution of the *sounding* pitch (or rest) per voice and step, so held notes count.

    With p = softmax(pitch_logits) and h = sigmoid(hold_logits):
    q_s = (1 − h_s)·p_s + h_s·q_{s−1}. The measure is decoded on its own, so nothing is known
    about the note before step 0: we set q_{−1} := p_0, i.e. a hold at step 0 holds what the
    pitch head predicts there (q_0 = p_0).

    Args:
        pitch_logits: ``(..., S, P+1)``; hold_logits: ``(..., S)``.

    Returns:
        q ``(..., S, P+1)``, each step a distribution over pitches + rest.
    """
    p = torch.softmax(pitch_logits, dim=-1)
    h = torch.sigmoid(hold_logits).unsqueeze(-1)
    sounding = [p[..., 0, :]]
    for step in range(1, p.shape[-2]):  # a 16-step recurrence
        sounding.append((1 - h[..., step, :]) * p[..., step, :] + h[..., step, :] * sounding[-1])
    return torch.stack(sounding, dim=-2)


def _pitch_class_matrix(n_pitches: int, low: int, like: Tensor) -> Tensor:
    """``(P, 12)`` one-hot: pitch index i (MIDI low + i) → its pitch class."""
    classes = (low + torch.arange(n_pitches, device=like.device)) % 12
    return F.one_hot(classes, 12).to(like.dtype)


def pitch_class_mass(q: Tensor, low: int) -> Tensor:
    """Fold the P pitch entries of ``q (..., S, P+1)`` into 12 pitch classes, dropping the rest → ``(..., S, 12)``."""
    n_pitches = q.shape[-1] - 1
    return q[..., :n_pitches] @ _pitch_class_matrix(n_pitches, low, q)


def poly_pitch_class_mass(activation_logits: Tensor, low: int) -> Tensor:
    """Pitch-class mass of a polyphonic prediction ``(..., S, P)`` → ``(..., S, 12)``.

    An approximation: sigmoid(activation) is used as the sounding mass, so only onsets count
    (durations are ignored) and a voice's mass may exceed 1 when it plays a chord.
    """
    return torch.sigmoid(activation_logits) @ _pitch_class_matrix(activation_logits.shape[-1], low,
                                                                  activation_logits)


def _truth_onsets(truth: Tensor, truth_mask: Tensor, n_pitches: int) -> Tensor:
    """Onset indicator ``(B, T', V, S, P)`` of the present truth voices (mono tokens or poly arrays)."""
    if truth.is_floating_point() and truth.dim() == 6:  # poly (B, T', V, S, P, 2)
        if truth.shape[-2] != n_pitches:
            raise ValueError(f"poly truth has {truth.shape[-2]} pitches, expected {n_pitches}")
        onsets = (truth[..., 0] >= 0.5).float()
    else:  # mono tokens (B, T', V, S): classes < P are onsets
        tokens = truth.long()
        onsets = F.one_hot(tokens.clamp(max=n_pitches), n_pitches + 1)[..., :n_pitches].float()
    return onsets * truth_mask.float()[..., None, None]


def scale_loss(pc: Tensor, truth_tokens: Tensor, truth_mask: Tensor, low: int, n_pitches: int) -> Tensor:
    """Scale loss: reward predicted pitch classes found in the truth, penalise the others.

    count_c = number of ground-truth notes (onsets) of pitch class c over the given truth
    measures, voices and steps; weight_c = 1 − 2·clip(count_c, 0, 1) (−1 present, +1 absent);
    loss = Σ_c weight_c · Σ_{v,s} pc[v, s, c]. Counts are not normalised (that would turn
    rewards into penalties). An empty truth penalises all mass.

    Args:
        pc: predicted pitch-class mass ``(B, V, S, 12)``.
        truth_tokens: ``(B, T', V, S)`` tokens, or poly arrays ``(B, T', V, S, P, 2)``.
        truth_mask: ``(B, T', V)``, which truth voices count.
        low: MIDI number of pitch index 0.
        n_pitches: P (tokens < P are onsets).

    Returns:
        ``(B,)``.
    """
    onsets = _truth_onsets(truth_tokens, truth_mask, n_pitches)  # (B, T', V, S, P)
    counts = onsets.sum(dim=(1, 2, 3)) @ _pitch_class_matrix(n_pitches, low, onsets)  # (B, 12)
    weight = 1 - 2 * counts.clamp(0, 1)
    return (weight * pc.sum(dim=(1, 2))).sum(dim=-1)


def onset_mass(pitch_logits: Tensor, hold_logits: Tensor) -> Tensor:
    """Predicted onsets per step, summed over voices: o_s = Σ_v (1 − h_{v,s})·(1 − p_{v,s,rest}) → ``(B, S)``."""
    p_rest = torch.softmax(pitch_logits, dim=-1)[..., -1]
    return ((1 - torch.sigmoid(hold_logits)) * (1 - p_rest)).sum(dim=1)


def poly_onset_mass(activation_logits: Tensor) -> Tensor:
    """Polyphonic onsets per step: o_s = Σ_v P(at least one note starts) = Σ_v 1 − Π_p (1 − a) → ``(B, S)``."""
    return (1 - torch.prod(1 - torch.sigmoid(activation_logits), dim=-1)).sum(dim=1)


def rhythm_from_mass(onsets: Tensor, truth: Tensor, truth_mask: Tensor, n_pitches: int) -> Tensor:
    """Rhythm loss from predicted onset mass ``(B, S)``: Σ_s (1 − 2·presence_s)·o_s → ``(B,)``.

    presence_s = 1 if any present truth voice of any truth measure has an onset at step s.
    """
    truth_onsets = _truth_onsets(truth, truth_mask, n_pitches)  # (B, T', V, S, P)
    presence = truth_onsets.amax(dim=(1, 2, 4))  # (B, S)
    return ((1 - 2 * presence) * onsets).sum(dim=-1)


def rhythm_loss(pitch_logits: Tensor, hold_logits: Tensor, truth_tokens: Tensor, truth_mask: Tensor) -> Tensor:
    """Rhythm loss: reward predicted onsets at steps where the truth has onsets, penalise them elsewhere.

    weight_s = 1 − 2·presence_s (presence: any voice of any truth measure has an onset,
    token < P, at step position s); o_s = Σ_v (1 − h_{v,s})·(1 − p_{v,s,rest});
    loss = Σ_s weight_s·o_s.

    Args:
        pitch_logits: ``(B, V, S, P+1)``; hold_logits: ``(B, V, S)``.
        truth_tokens: ``(B, T', V, S)``; truth_mask: ``(B, T', V)``.

    Returns:
        ``(B,)``.
    """
    return rhythm_from_mass(onset_mass(pitch_logits, hold_logits), truth_tokens, truth_mask,
                            pitch_logits.shape[-1] - 1)


def poly_rhythm_loss(activation_logits: Tensor, truth: Tensor, truth_mask: Tensor) -> Tensor:
    """:func:`rhythm_loss` for poly predictions ``(B, V, S, P)`` and truth ``(B, T', V, S, P, 2)`` → ``(B,)``."""
    return rhythm_from_mass(poly_onset_mass(activation_logits), truth, truth_mask, activation_logits.shape[-1])


def harmony_terms(pc: Tensor) -> Tensor:
    """Dissonance between simultaneous voices, per interval: semitone, tone, tritone → ``(B, 3)``.

    For n in (1, 2, 6): Σ over ordered pairs of different voices v ≠ w, Σ over steps, of
    ⟨pc[v, s], roll(pc[w, s], n)⟩. Pairs within a voice are skipped (not simultaneous notes).
    Rolling by 6 meets each tritone from both sides, so that column is halved.

    Args:
        pc: pitch-class mass ``(B, V, S, 12)``.
    """
    columns = []
    for interval in HARMONY_INTERVALS:
        rolled = torch.roll(pc, shifts=interval, dims=-1)
        pairs = torch.einsum("bvsc,bwsc->bvw", pc, rolled)  # (B, V, V), summed over steps
        different = pairs.sum(dim=(1, 2)) - torch.diagonal(pairs, dim1=1, dim2=2).sum(dim=-1)
        columns.append(different / 2 if interval == 6 else different)
    return torch.stack(columns, dim=-1)


def harmony_loss(pc: Tensor, weights) -> Tensor:
    """Weighted harmony terms: ``harmony_terms(pc) @ weights`` (semitone, tone, tritone) → ``(B,)``."""
    weights = torch.as_tensor(weights, dtype=pc.dtype, device=pc.device)
    return harmony_terms(pc) @ weights


def harmony_value(pc: Tensor) -> Tensor:
    """Scale-free harmony value for logging → ``(B,)``.

    The unweighted sum of the three :func:`harmony_terms` divided by (ordered voice pairs
    V·(V−1) × steps S): the mean dissonant mass per ordered pair of voices and step. For
    one-hot distributions each unordered pair at a semitone, tone or tritone adds 1 (not 2),
    so the value is half the share of dissonant (unordered pair, step) meetings: 0.5 when
    every pair is dissonant at every step. Uniform distributions over the 12 classes give
    1/12 + 1/12 + 1/24 ≈ 0.21. Zero when there are fewer than two voices.
    """
    batch, voices, steps, _ = pc.shape
    if voices < 2:
        return pc.new_zeros(batch)
    return harmony_terms(pc).sum(dim=-1) / (voices * (voices - 1) * steps)
