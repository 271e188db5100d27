"""The measure writer (autoregressive decoder): an exact distribution, clamping, seeded decoding."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from rmvae.config import STEPS_PER_MEASURE, Config, apply_overrides
from rmvae.losses import mono_recon
from rmvae.model.writer import MeasureWriter, TokenSampling, as_mono_decoded
from rmvae.module import RMVAEModule

V, C, L = 2, 3, 2  # 2 voices × 2 steps × 3 classes (one pitch, rest, hold): 81 sequences


def tiny_writer(cond_size: int = 0, seed: int = 0) -> MeasureWriter:
    torch.manual_seed(seed)
    writer = MeasureWriter(V, C, cond_size, width=8, embed=4).eval()
    with torch.no_grad():  # large random weights so the distribution is far from uniform
        for parameter in writer.parameters():
            parameter.mul_(3)
    return writer


def context(n: int = 1) -> torch.Tensor:
    """16 context steps: a known first voice, an unknown second one."""
    ctx = torch.full((n, STEPS_PER_MEASURE, V), C, dtype=torch.long)
    ctx[:, :, 0] = torch.arange(STEPS_PER_MEASURE) % 2
    return ctx


def all_sequences() -> torch.Tensor:
    """Every (L, V) token sequence ``(81, L, V)``."""
    return torch.tensor(list(itertools.product(range(C), repeat=L * V))).reshape(-1, L, V)


def test_distribution_sums_to_one_and_nll_is_chain_rule():
    writer = tiny_writer(cond_size=2)
    seqs = all_sequences()
    cond = torch.tensor([0.5, -1.0]).expand(len(seqs), L, 2)
    log_probs = writer(torch.cat([context(len(seqs)), seqs], dim=1), cond)  # (81, L, V, C)
    per_token = log_probs.gather(-1, seqs.unsqueeze(-1)).squeeze(-1)  # (81, L, V)
    joint = per_token.sum(dim=(1, 2)).double().exp()
    assert joint.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert joint.max().item() > 3 / 81  # far from uniform: the sum is not trivially 1
    # the mono heads' reconstruction loss of the converted log-probabilities is −log p(sequence)
    decoded = as_mono_decoded(log_probs.permute(0, 2, 1, 3))  # (81, V, L, ·)
    nll = mono_recon(decoded.pitch_logits, decoded.hold_logits, seqs.permute(0, 2, 1), torch.ones(len(seqs), V))
    assert torch.allclose(nll.double(), -joint.log(), atol=1e-4)


def test_greedy_sample_takes_the_teacher_forced_argmax():
    """Incremental decoding and teacher forcing compute the same conditionals."""
    writer = tiny_writer(cond_size=2, seed=1)
    cond = torch.randn(4, L, 2)
    tokens = writer.sample(context(4), cond, L)  # (4, L, V)
    log_probs = writer(torch.cat([context(4), tokens], dim=1), cond)
    previous = torch.cat([context(4)[:, -1:], tokens[:, :-1]], dim=1)
    no_hold = (previous == writer.rest) | (previous == writer.unknown)
    allowed = log_probs.masked_fill(torch.nn.functional.one_hot(torch.tensor(writer.hold), C).bool()
                                    & no_hold.unsqueeze(-1), -math.inf)
    assert torch.equal(tokens, allowed.argmax(-1))


def test_decoding_is_seeded_and_temperature_zero_is_greedy():
    writer = tiny_writer(cond_size=2, seed=2)
    cond = torch.randn(16, L, 2)
    greedy = writer.sample(context(16), cond, L)
    assert torch.equal(greedy, writer.sample(context(16), cond, L))
    hot = TokenSampling(temperature=1.5)
    first = writer.sample(context(16), cond, L, hot, generator=torch.Generator().manual_seed(3))
    again = writer.sample(context(16), cond, L, hot, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and not torch.equal(first, greedy)
    cold = writer.sample(context(16), cond, L, TokenSampling(temperature=1e-4), generator=torch.Generator().manual_seed(3))
    assert torch.equal(cold, greedy)
    nucleus = writer.sample(context(16), cond, L, TokenSampling(temperature=1.0, top_p=1e-6),
                            generator=torch.Generator().manual_seed(3))
    assert torch.equal(nucleus, greedy)  # a nucleus of one class is the argmax


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    draws = torch.stack([TokenSampling(temperature=1.0, top_p=0.7).choose(logits, torch.Generator().manual_seed(i))
                         for i in range(200)])
    assert set(draws.flatten().tolist()) == {0, 1}  # 0.5 < 0.7 ≤ 0.5 + 0.3


def test_known_voices_are_clamped():
    writer = tiny_writer(cond_size=2, seed=4)
    cond = torch.randn(8, L, 2)
    known = torch.randint(0, 2, (8, L, V))
    mask = torch.tensor([[True, False]] * 8)
    tokens = writer.sample(context(8), cond, L, TokenSampling(temperature=1.0), known, mask,
                           torch.Generator().manual_seed(0))
    assert torch.equal(tokens[..., 0], known[..., 0])


def tiny_module(**overrides) -> RMVAEModule:
    torch.manual_seed(0)
    config = apply_overrides(Config(), {"model.size": "small", "model.width_scale": 0.25, "train.wandb": False,
                                        **overrides})
    return RMVAEModule(config.to_dict(), {"encoding": "mono", "low": 60, "high": 63, "n_voices": 4}).eval()


def tiny_batch(batch: int = 3, measures: int = 8) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"inputs": torch.randint(0, 6, (batch, measures, 4, STEPS_PER_MEASURE), generator=generator),
            "input_mask": torch.ones(batch, measures, 4, dtype=torch.bool),
            "target": torch.randint(0, 6, (batch, 4, STEPS_PER_MEASURE), generator=generator),
            "target_mask": torch.ones(batch, 4, dtype=torch.bool)}


WRITERS = [{"model.measure_decoder": "autoregressive"},
           {"model.measure_decoder": "autoregressive", "model.writer_context": "measure"},
           {"model.kind": "autoregressive"}]


@pytest.mark.parametrize("overrides", WRITERS)
def test_fill_keeps_the_known_voices_byte_identical(overrides):
    import numpy as np

    from rmvae.tasks import Composer, Piece, Sampling

    module = tiny_module(**overrides)
    measures = tiny_batch(1, 10)["inputs"][0].numpy()
    piece = Piece(measures, np.zeros(measures.shape[:2], dtype=bool))
    filled = Composer(module, Sampling(temperature=1.0, top_p=0.9, seed=1)).fill(piece, [1, 3])
    assert np.array_equal(filled.measures[:, [0, 2]], measures[:, [0, 2]])
    assert not np.array_equal(filled.measures[:, [1, 3]], measures[:, [1, 3]])


def test_baseline_nll_is_the_target_tokens_chain_rule():
    """The autoregressive baseline's nll is −log p(target | window): the sum over the target's
    tokens of the writer's log-probabilities, and independent of the importance samples."""
    module = tiny_module(**{"model.kind": "autoregressive"})
    batch = tiny_batch()
    nll = module.predictive_nll(batch, 4, torch.Generator().manual_seed(0))
    log_probs = module.model.window_log_probs(batch["inputs"], batch["input_mask"], batch["target"])[:, -1]
    by_hand = -log_probs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1).sum(dim=(1, 2))
    assert torch.allclose(nll, by_hand, atol=1e-4)
    # changing the target's last token changes only the NLL of what is scored after it
    assert torch.allclose(nll, module.predictive_nll(batch, 16, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("overrides", WRITERS[:2])
def test_rmvae_writer_is_causal_and_scores_the_given_target(overrides):
    """The forward pass scores the target it is given (teacher forcing from the predicted mean),
    and no token's probability depends on itself or on what comes after it."""
    module = tiny_module(**overrides)
    batch = tiny_batch()
    output = module.model(batch["inputs"], batch["input_mask"], batch["target"], sample=False, reconstruct=False)
    decoded = module.model.decode(output.prior_mu, output.state, batch["target"], output.target_context)
    nll_given_z = module.reconstruction(decoded, batch["target"], batch["target_mask"])
    assert torch.allclose(nll_given_z, module.reconstruction(output.prediction, batch["target"], batch["target_mask"]))
    # the target's own tokens must not leak into their own prediction: changing the last token of
    # the last voice changes only that token's log-probability
    changed = batch["target"].clone()
    changed[:, 3, -1] = (changed[:, 3, -1] + 1) % 6
    again = module.model.decode(output.prior_mu, output.state, changed, output.target_context)
    assert torch.allclose(decoded.pitch_logits[:, :, :-1], again.pitch_logits[:, :, :-1])
    assert torch.allclose(decoded.pitch_logits[:, :3, -1], again.pitch_logits[:, :3, -1])


def test_window_writer_writes_the_target_where_one_pass_over_the_window_would():
    """Handing the LSTM state on at the bar line is exact: the target's teacher-forced heads equal
    those of one writer pass over the window's tokens and the target together."""
    from einops import rearrange, repeat

    from rmvae.model.writer import as_mono_decoded

    module = tiny_module(**{"model.measure_decoder": "autoregressive"})
    batch = tiny_batch()
    model = module.model
    output = model(batch["inputs"], batch["input_mask"], batch["target"], sample=False, reconstruct=False)
    before = torch.cat([output.state.new_zeros(3, 1, output.state.shape[-1]),
                        model.temporal_states(output.expert_mu, batch["input_mask"])[:, :-1]], dim=1)
    cond = torch.cat([repeat(model.decoder_input(output.z, before), "b t d -> b (t s) d", s=STEPS_PER_MEASURE),
                      repeat(model.decoder_input(output.prior_mu, output.state), "b d -> b s d", s=STEPS_PER_MEASURE)],
                     dim=1)
    window = torch.cat([batch["inputs"], batch["target"][:, None]], dim=1)
    start = torch.full((3, STEPS_PER_MEASURE, 4), model.writer.unknown)
    sequence = torch.cat([start, rearrange(window, "b t v s -> b (t s) v")], dim=1)
    one_pass = as_mono_decoded(rearrange(model.writer(sequence, cond)[:, -STEPS_PER_MEASURE:], "b s v c -> b v s c"))
    assert torch.allclose(output.prediction.pitch_logits, one_pass.pitch_logits, atol=1e-5)
    assert torch.allclose(output.prediction.hold_logits, one_pass.hold_logits, atol=1e-5)


def test_parallel_pitches_by_hand():
    from rmvae.model.writer import parallel_pitches

    t = lambda *values: torch.tensor(values)  # noqa: E731
    # upper G → A over lower C: lower C → D is a parallel fifth; D an octave up (a fourth), staying,
    # or moving down are not
    forbidden = parallel_pitches(t(7), t(9), t(0), 16)[0]
    assert forbidden.nonzero().flatten().tolist() == [2]
    # octave C5 → D5 over C4: lower D4 (a parallel octave) and D5 (octave to unison, the same class)
    forbidden = parallel_pitches(t(12), t(14), t(0), 16)[0]
    assert forbidden.nonzero().flatten().tolist() == [2, 14]
    # a third before, or the upper voice holding, or a rest before: nothing is forbidden
    assert not parallel_pitches(t(4), t(5), t(0), 16).any()
    assert not parallel_pitches(t(7), t(7), t(0), 16).any()
    assert not parallel_pitches(t(7), t(9), t(-1), 16).any()


def count_parallels(tokens: torch.Tensor, n_pitches: int) -> int:
    """Parallel fifths/octaves in token sequences ``(N, L, V)``, counted by plain loops."""
    count = 0
    for sequence in tokens.tolist():
        sounding = [-1] * len(sequence[0])
        for step_tokens in sequence:
            now = [t if t < n_pitches else (s if t == n_pitches + 1 else -1) for t, s in zip(step_tokens, sounding)]
            for a in range(len(now)):
                for b in range(a + 1, len(now)):
                    p, q, p2, q2 = sounding[a], sounding[b], now[a], now[b]
                    if min(p, q, p2, q2) < 0 or abs(p - q) % 12 not in (0, 7):
                        continue
                    up_a, up_b = (p2 > p) - (p2 < p), (q2 > q) - (q2 < q)
                    if up_a == up_b != 0 and abs(p2 - q2) % 12 == abs(p - q) % 12:
                        count += 1
            sounding = now
    return count


def test_no_parallels_never_draws_one():
    torch.manual_seed(5)
    n_pitches = 12
    writer = MeasureWriter(2, n_pitches + 2, 0, width=8, embed=4).eval()
    start = torch.full((256, STEPS_PER_MEASURE, 2), n_pitches + 2)
    free = writer.sample(start, None, 16, TokenSampling(temperature=2.0), generator=torch.Generator().manual_seed(1))
    strict = writer.sample(start, None, 16, TokenSampling(temperature=2.0, no_parallels=True),
                           generator=torch.Generator().manual_seed(1))
    assert count_parallels(free, n_pitches) > 20  # the test can fail: unconstrained draws have them
    assert count_parallels(strict, n_pitches) == 0


def test_dissonant_counts_by_hand():
    from rmvae.model.writer import dissonant_counts

    # against C (0) and G (7): C# clashes with both (a semitone, a tritone), D with C only (a tone
    # against C, a fourth below G), E with neither, C an octave up with neither, B with C (a major
    # seventh) and with nothing else (a major third above G)
    counts = dissonant_counts(torch.tensor([[0, 7]]), 24)[0]
    assert [counts[p].item() for p in (1, 2, 4, 12, 11)] == [2, 1, 0, 0, 1]
    # a voice sounding nothing (−1) clashes with nothing
    assert not dissonant_counts(torch.tensor([[-1, -1]]), 24).any()


def test_dissonance_penalty_divides_each_clash_by_e_to_the_lambda():
    """Voice 1's logits after the constraint are its own minus λ × the clashes with voice 0, a
    held note's clash included, the rest and the other pitches untouched."""
    n_pitches = 12
    writer = MeasureWriter(2, n_pitches + 2, 0, width=8, embed=4).eval()
    logits = torch.zeros(1, n_pitches + 2)
    before = torch.tensor([[5, 1]])  # voice 1 sounded C# before: holding it keeps C# sounding
    now = torch.tensor([[0, -1]])  # voice 0 has just written C
    writer._constrain(logits, 1, before, now, TokenSampling(temperature=1.0, dissonance_penalty=1.5))
    expected = torch.zeros(n_pitches + 2)
    expected[[1, 2, 6, 10, 11]] = -1.5  # C#, D, F#, B♭, B against C
    expected[n_pitches + 1] = -1.5  # the hold: C# against C
    assert torch.equal(logits[0], expected)
    # the first voice written at a step hears nobody: nothing changes
    first = torch.zeros(1, n_pitches + 2)
    writer._constrain(first, 0, before, now, TokenSampling(temperature=1.0, dissonance_penalty=1.5))
    assert not first.any()


def test_dissonance_penalty_lowers_the_clashes_drawn():
    from rmvae.model.writer import dissonant_counts

    torch.manual_seed(5)
    n_pitches = 12
    writer = MeasureWriter(2, n_pitches + 2, 0, width=8, embed=4).eval()
    start = torch.full((256, STEPS_PER_MEASURE, 2), n_pitches + 2)

    def clashes(penalty: float) -> int:
        tokens = writer.sample(start, None, 16, TokenSampling(temperature=1.0, dissonance_penalty=penalty),
                               generator=torch.Generator().manual_seed(1))
        new = (tokens < n_pitches)
        pitches = torch.where(new, tokens, torch.full_like(tokens, -1))  # new notes only
        both = new.all(dim=-1)
        counts = dissonant_counts(pitches[..., :1].reshape(-1, 1), n_pitches)
        return int(counts.gather(1, pitches[..., 1].reshape(-1, 1).clamp(min=0))[both.reshape(-1)].sum())

    free, penalised = clashes(0.0), clashes(3.0)
    assert free > 50  # random weights clash often: the test can fail
    assert penalised < free / 4
