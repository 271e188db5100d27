"""The two encodings against hand-built measures: features, arrays, decoding and notes round trips."""
import numpy as np
import pytest
import torch
from torch import nn

from rmvae.config import STEPS_PER_MEASURE as S
from rmvae.config import ConfigError
from rmvae.data.notes import PitchRange
from rmvae.encodings import MONO, POLY, Decoded, encoding_named

RANGE = PitchRange(60, 65)  # P = 6; rest = 6, hold = 7
P, REST, HOLD = RANGE.n_pitches, RANGE.rest, RANGE.hold
# One voice, one measure: MIDI 62 for 4 steps from step 0, MIDI 65 for 2 steps from step 8.
NOTES = np.array([[0, 0, 4, 62], [0, 8, 2, 65]])
TOKENS = np.array([[[2, HOLD, HOLD, HOLD, REST, REST, REST, REST, 5, HOLD] + [REST] * 6]])  # (T=1, V=1, S)
DURATIONS = np.zeros_like(TOKENS)
DURATIONS[0, 0, 0], DURATIONS[0, 0, 8] = 4, 2


def test_encoding_named_parses_names_and_refuses_others():
    assert encoding_named("mono") is MONO and encoding_named("poly") is POLY
    assert encoding_named(POLY) is POLY
    assert (MONO.name, POLY.name, MONO.monophonic, POLY.monophonic) == ("mono", "poly", True, False)
    with pytest.raises(ConfigError, match=r"'nope' is not valid; choose one of \['mono', 'poly'\]"):
        encoding_named("nope")


def test_mono_features_are_the_one_hot_of_the_hand_built_tokens():
    features = MONO.features(torch.from_numpy(TOKENS), P)
    assert features.shape == (1, 1, S, P + 2) == (1, 1, S, MONO.n_features(P))
    expected = torch.zeros(S, P + 2)
    for step, token in enumerate(TOKENS[0, 0]):
        expected[step, token] = 1.0
    assert torch.equal(features[0, 0], expected)


def test_poly_arrays_and_features_of_the_hand_built_measure():
    poly = POLY.measures_of(TOKENS, DURATIONS, RANGE)
    assert poly.shape == (1, 1, S, P, 2) and poly.dtype == np.float32
    expected = np.zeros((S, P, 2), dtype=np.float32)
    expected[0, 2] = (1.0, 4.0)
    expected[8, 5] = (1.0, 2.0)
    assert np.array_equal(poly[0, 0], expected)
    features = POLY.features(torch.from_numpy(poly), P)
    assert features.shape == (1, 1, S, POLY.n_features(P)) == (1, 1, S, 2 * P)
    assert features[0, 0, 0, 2 * 2] == 1.0 and features[0, 0, 0, 2 * 2 + 1] == 4.0  # (pitch, kind) flattened
    assert features.sum() == 1 + 4 + 1 + 2
    with pytest.raises(ValueError, match=r"must end in \(P, 2\)"):
        POLY.features(torch.zeros(1, S, P + 1, 2), P)


@pytest.mark.parametrize("encoding", [MONO, POLY])
def test_measures_decode_back_to_the_same_notes(encoding):
    measures = encoding.measures_of(TOKENS, DURATIONS, RANGE)
    assert np.array_equal(encoding.to_notes(measures, RANGE), NOTES)
    assert len(encoding.to_notes(encoding.empty(2, 3, RANGE), RANGE)) == 0


def confident_heads(encoding, measures: torch.Tensor) -> Decoded:
    """Head outputs that put (almost) all probability on ``measures`` ``(V, S…)``."""
    if encoding is MONO:
        hold = torch.where(measures == HOLD, 20.0, -20.0)
        pitch = torch.full((*measures.shape, P + 1), -20.0)
        pitch.scatter_(-1, measures.clamp(max=REST).unsqueeze(-1), 20.0)
        return Decoded(pitch_logits=pitch, hold_logits=hold)
    return Decoded(activation_logits=torch.where(measures[..., 0] > 0, 20.0, -20.0),
                   duration=measures[..., 1] - 0.4 * (measures[..., 1] > 0))  # rounds back to the truth


@pytest.mark.parametrize("encoding", [MONO, POLY])
def test_confident_heads_decode_to_the_measure_and_cost_nothing(encoding):
    measure = torch.from_numpy(np.asarray(encoding.measures_of(TOKENS, DURATIONS, RANGE))[0])  # (V, S…)
    decoded = confident_heads(encoding, measure)
    assert torch.equal(encoding.decode_tokens(decoded).to(measure.dtype), measure)
    mean = encoding.predictive_mean(Decoded(**{k: None if v is None else v.unsqueeze(0) for k, v in vars(decoded).items()}))
    assert torch.equal(encoding.decode_tokens(mean).to(measure.dtype), measure)  # one draw: the same symbols
    assert encoding.step_hits(encoding.decode_tokens(decoded), measure).all()
    if encoding is MONO:  # the duration regression of poly is not a probability; the mono NLL is
        batch = measure.unsqueeze(0).long()  # (B=1, V, S)
        loss = encoding.recon_loss(confident_heads(encoding, batch), batch, torch.ones(1, 1))
        assert 0 <= float(loss) < 1e-6


def test_mono_decoding_turns_a_hold_after_a_rest_into_a_rest():
    tokens = torch.tensor([[REST, HOLD, 3, HOLD] + [REST] * (S - 4)])
    assert MONO.decode_tokens(confident_heads(MONO, tokens))[0, :4].tolist() == [REST, REST, 3, HOLD]


@pytest.mark.parametrize("encoding, keys", [(MONO, ["to_pitch", "to_hold"]), (POLY, ["to_activation", "to_duration"])])
def test_heads_keep_their_checkpoint_names(encoding, keys):
    decoder = nn.Module()
    encoding.build_heads(decoder, 8, P)
    assert list(decoder.state_dict()) == [f"{k}.{p}" for k in keys for p in ("weight", "bias")]
    first, second = encoding.apply_heads(decoder, torch.zeros(2, S, 8))
    assert first.shape[:2] == second.shape[:2] == (2, S)
