"""The positional-unigram baseline against counts worked out by hand."""
import math

import numpy as np
import pytest
import torch

from rmvae.baselines import PositionalUnigram, target_tokens, unigram_scores
from rmvae.data.notes import PitchRange

# One pitch (MIDI 60): class 0 = the pitch's onset, 1 = rest, 2 = hold → 3 token classes.
PITCHES = PitchRange(60, 60)

# Training corpus: N = 3 target measures, V = 2 voices, S = 2 steps. Voice 1 of measure 1 is
# absent; its tokens [2, 0] are garbage that must not be counted.
TRAIN = np.array([[[0, 2], [1, 2]],
                  [[0, 2], [2, 0]],
                  [[1, 2], [1, 2]]])
TRAIN_MASK = np.array([[True, True], [True, False], [True, True]])
# Add-one counts (alpha = 1) over the present voices:
#   voice 0, step 0: tokens 0, 0, 1 → [1+2, 1+1, 1+0] = [3, 2, 1] / 6
#   voice 0, step 1: tokens 2, 2, 2 → [1, 1, 1+3]     = [1, 1, 4] / 6
#   voice 1, step 0: tokens 1, 1    → [1, 1+2, 1]     = [1, 3, 1] / 5
#   voice 1, step 1: tokens 2, 2    → [1, 1, 1+2]     = [1, 1, 3] / 5
EXPECTED_PROBS = np.array([[[3 / 6, 2 / 6, 1 / 6], [1 / 6, 1 / 6, 4 / 6]],
                           [[1 / 5, 3 / 5, 1 / 5], [1 / 5, 1 / 5, 3 / 5]]])


def fitted() -> PositionalUnigram:
    return PositionalUnigram.fit(TRAIN, TRAIN_MASK, n_classes=3, alpha=1.0)


def test_fit_counts_present_voices_with_add_alpha():
    model = fitted()
    assert model.log_probs.shape == (2, 2, 3)
    np.testing.assert_allclose(model.log_probs, np.log(EXPECTED_PROBS), rtol=1e-12)


def test_fit_one_voice_two_pieces():
    # targets [[0, 2]] and [[1, 2]] (N=2, V=1, S=2), alpha = 1, 3 classes:
    #   step 0: tokens 0, 1 → [1+1, 1+1, 1] = [2, 2, 1] / 5
    #   step 1: tokens 2, 2 → [1, 1, 1+2]   = [1, 1, 3] / 5
    model = PositionalUnigram.fit(np.array([[[0, 2]], [[1, 2]]]), np.ones((2, 1), dtype=bool), n_classes=3)
    np.testing.assert_allclose(np.exp(model.log_probs), [[[2 / 5, 2 / 5, 1 / 5], [1 / 5, 1 / 5, 3 / 5]]], rtol=1e-12)
    # A held-out measure [[0, 2]]: −log(2/5) − log(3/5).
    nll = model.nll(np.array([[[0, 2]]]), np.ones((1, 1), dtype=bool))
    np.testing.assert_allclose(nll, [-math.log(2 / 5) - math.log(3 / 5)], rtol=1e-12)


def test_alpha_smooths_towards_uniform():
    # alpha = 3 on the one-voice corpus: step 0 → [3+1, 3+1, 3] / 11, step 1 → [3, 3, 3+2] / 11.
    model = PositionalUnigram.fit(np.array([[[0, 2]], [[1, 2]]]), np.ones((2, 1), dtype=bool), n_classes=3, alpha=3.0)
    np.testing.assert_allclose(np.exp(model.log_probs), [[[4 / 11, 4 / 11, 3 / 11], [3 / 11, 3 / 11, 5 / 11]]],
                               rtol=1e-12)


def test_nll_sums_only_present_voices():
    model = fitted()
    held_out = np.array([[[1, 2], [0, 0]],    # voice 1 absent: its tokens (improbable ones) do not count
                         [[0, 0], [1, 2]],    # both present
                         [[2, 2], [2, 2]]])   # no voice present
    masks = np.array([[True, False], [True, True], [False, False]])
    expected = [
        -math.log(2 / 6) - math.log(4 / 6),                              # = log 4.5
        (-math.log(3 / 6) - math.log(1 / 6)) + (-math.log(3 / 5) - math.log(3 / 5)),  # = log 12 + 2 log 5/3
        0.0,
    ]
    np.testing.assert_allclose(model.nll(held_out, masks), expected, rtol=1e-12, atol=1e-12)
    assert math.isclose(expected[0], math.log(4.5)) and math.isclose(expected[1], math.log(12 * 25 / 9))
    # The same measures with voice 1 present everywhere: voice 1 of measure 0 adds −2 log(1/5).
    everything = model.nll(held_out[:1], np.ones((1, 2), dtype=bool))
    np.testing.assert_allclose(everything, [math.log(4.5) + 2 * math.log(5)], rtol=1e-12)


def test_predict_is_the_argmax_of_every_voice_and_step():
    model = fitted()
    predicted = model.predict(4)
    # argmax of [3,2,1], [1,1,4] (voice 0) and [1,3,1], [1,1,3] (voice 1)
    assert predicted.shape == (4, 2, 2) and predicted.dtype.kind == "i"
    assert (predicted == np.array([[0, 2], [1, 2]])).all()
    predicted[0, 0, 0] = 7  # a writable copy, not a view of a broadcast
    assert (model.predict(1) == np.array([[0, 2], [1, 2]])).all()


def test_fit_accepts_integer_masks_like_nll():
    as_int = PositionalUnigram.fit(TRAIN, TRAIN_MASK.astype(np.int64), n_classes=3)
    np.testing.assert_allclose(as_int.log_probs, fitted().log_probs, rtol=1e-12)


# --- unigram_scores on tiny fake datasets -----------------------------------------------------


class FakeWindows:
    """Just what ``target_tokens`` reads: ``len``, items with ``target``/``target_mask`` and ``encoding``."""

    def __init__(self, targets, masks, encoding="mono"):
        self.targets, self.masks, self.encoding = np.asarray(targets), np.asarray(masks), encoding

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        tokens = torch.from_numpy(self.targets[i].astype(np.int64))
        item = {"target_mask": torch.from_numpy(self.masks[i].astype(bool))}
        if self.encoding == "poly":  # the poly target is another array; the tokens ride along
            item["target"] = torch.full((*tokens.shape, PITCHES.n_pitches, 2), 9.0)
            item["target_tokens"] = tokens
        else:
            item["target"] = tokens
        return item


SPLIT = np.array([[[1, 2], [1, 1]],
                  [[0, 0], [1, 2]]])


@pytest.mark.parametrize("encoding", ["mono", "poly"])
def test_unigram_scores_by_hand(encoding):
    train = FakeWindows(TRAIN, TRAIN_MASK, encoding)
    split = FakeWindows(SPLIT, np.ones((2, 2), dtype=bool), encoding)
    scores = unigram_scores(train, split, PITCHES)
    # window 0: voice 0 [1, 2] → −log(2/6) − log(4/6) = log 4.5; voice 1 [1, 1] → −log(3/5) − log(1/5) = log 25/3
    # window 1: voice 0 [0, 0] → −log(3/6) − log(1/6) = log 12;  voice 1 [1, 2] → −2 log(3/5) = log 25/9
    per_window = [math.log(4.5 * 25 / 3), math.log(12 * 25 / 9)]
    assert len(scores["per_window"]) == 2  # one value per window, in dataset order
    np.testing.assert_allclose(scores["per_window"], per_window, rtol=1e-12)
    assert math.isclose(scores["nll"], (per_window[0] + per_window[1]) / 2, rel_tol=1e-12)
    assert math.isclose(scores["nll"], math.log(1250) / 2, rel_tol=1e-12)
    # Prediction [[0, 2], [1, 2]] for every window.
    # window 0: voice 0 [0,2] vs [1,2] → 1 hit; voice 1 [1,2] vs [1,1] → 1 hit
    # window 1: voice 0 [0,2] vs [0,0] → 1 hit; voice 1 [1,2] vs [1,2] → 2 hits  → 5 / 8
    assert math.isclose(scores["acc"], 5 / 8)
    # Onsets (token 0) in the truth: window 1, voice 0, steps 0 and 1; predicted 0 at step 0 only.
    assert math.isclose(scores["acc_onsets"], 1 / 2)


def test_unigram_scores_per_window_follows_dataset_order():
    train = FakeWindows(TRAIN, TRAIN_MASK)
    forward = unigram_scores(train, FakeWindows(SPLIT, np.ones((2, 2), dtype=bool)), PITCHES)
    backward = unigram_scores(train, FakeWindows(SPLIT[::-1], np.ones((2, 2), dtype=bool)), PITCHES)
    np.testing.assert_allclose(backward["per_window"], forward["per_window"][::-1], rtol=1e-12)
    assert math.isclose(backward["nll"], forward["nll"], rel_tol=1e-12)


def test_target_tokens_stacks_in_dataset_order():
    targets, masks = target_tokens(FakeWindows(TRAIN, TRAIN_MASK))
    assert targets.dtype == np.int64 and masks.dtype == bool
    assert (targets == TRAIN).all() and (masks == TRAIN_MASK).all()


def test_unigram_scores_uses_the_whole_pitch_range():
    # A wider range (3 pitches: classes 0-2 onsets, 3 rest, 4 hold): five classes, add-one.
    pitches = PitchRange(60, 62)
    train = FakeWindows([[[0, 4]], [[2, 4]], [[2, 3]]], np.ones((3, 1), dtype=bool))
    split = FakeWindows([[[2, 4]]], np.ones((1, 1), dtype=bool))
    scores = unigram_scores(train, split, pitches)
    # step 0: tokens 0, 2, 2 → [2, 1, 3, 1, 1] / 8; step 1: 4, 4, 3 → [1, 1, 1, 2, 3] / 8
    assert math.isclose(scores["nll"], -math.log(3 / 8) - math.log(3 / 8), rel_tol=1e-12)
    assert scores["acc"] == 1.0 and scores["acc_onsets"] == 1.0  # predicted [2, 4] = the truth
