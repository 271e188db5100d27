"""Metrics on hand-made pieces and tokens with answers worked out by hand, and the anchors table."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rmvae.data.notes import PitchRange
from rmvae.intervals import mean_ci
from rmvae.metrics import (always_hold_baseline, dissonance_rate, distinct_pitches_per_voice, folder_statistics,
                           musical_statistics, note_length_entropy, onsets_per_measure, out_of_range_share,
                           parallel_perfects_per_note, pitch_class_distance, repeat_last_measure_baseline,
                           repeat_rate, slice_measures, token_accuracy)

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"
C4, D4, E4, G4 = 60, 62, 64, 67


def piece(*rows):
    """Note list from (voice, start, duration, pitch) rows."""
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def quarters(voice, pitches, first_step=0):
    """One quarter note (4 steps) per pitch, back to back."""
    return [(voice, first_step + 4 * i, 4, p) for i, p in enumerate(pitches)]


# --------------------------------------------------------------------------- musical statistics

def test_repeat_rate_one_measure_repeated_is_one():
    measure = quarters(0, [C4, D4, E4, G4]) + [(1, 0, 16, C4 - 12)]
    notes = piece(*[(v, s + 16 * m, d, p) for m in range(4) for v, s, d, p in measure])
    assert repeat_rate(notes, n_voices=2, n_measures=4) == 1.0


def test_repeat_rate_counts_per_voice_and_only_four_back():
    # voice 0 plays measures A B C D E A: the last A is 5 measures after the first → no repeat.
    voice0 = [(0, 16 * m, 16, p) for m, p in enumerate([60, 61, 62, 63, 64, 60])]
    assert repeat_rate(piece(*voice0), n_voices=1, n_measures=6) == 0.0
    # voice 1 plays A A A A A A: all 5 later measures repeat; with voice 0: 5 of 10 pairs.
    voice1 = [(1, 16 * m, 16, 48) for m in range(6)]
    assert repeat_rate(piece(*voice0, *voice1), n_voices=2, n_measures=6) == 0.5
    # the same pitch held across the bar line is not a repeat of a re-struck one:
    # m0 = onset at 0 lasting the bar, m1 = tie from m0 (onset −1), m2 = onset again → equals m0.
    tied = piece((0, 0, 32, 60), (0, 32, 16, 60))
    assert repeat_rate(tied, n_voices=1, n_measures=3) == 0.5


def test_repeat_rate_edge_cases():
    assert math.isnan(repeat_rate(piece(), 4, 8))
    assert math.isnan(repeat_rate(piece((0, 0, 4, 60)), 1, 1))


def test_dissonance_rate_by_hand():
    triad = piece((0, 0, 16, G4), (1, 0, 16, E4), (2, 0, 16, C4))
    assert dissonance_rate(triad, 3, 16) == 0.0
    second = piece((0, 0, 16, D4), (1, 0, 16, C4))
    assert dissonance_rate(second, 2, 16) == 1.0
    # a ninth (14 semitones) is a second mod 12; an octave is consonant
    assert dissonance_rate(piece((0, 0, 4, D4 + 12), (1, 0, 4, C4)), 2, 4) == 1.0
    assert dissonance_rate(piece((0, 0, 4, C4 + 12), (1, 0, 4, C4)), 2, 4) == 0.0
    # 8 steps C+D then 8 steps C+E: half the sounding frames are dissonant;
    # steps 16–31 have one voice only → not sounding frames, not counted
    half = piece((0, 0, 32, C4), (1, 0, 8, D4), (1, 8, 8, E4))
    assert dissonance_rate(half, 2, 32) == 0.5
    # a chord inside one voice is not an interval between voices; no two voices → NaN
    assert math.isnan(dissonance_rate(piece((0, 0, 16, C4), (0, 0, 16, D4)), 2, 16))


# Upper voice G4 A4 E5 D5 C5 over lower C4 D4 A3 D4 C4, quarters: G/C → A/D is a parallel fifth (both
# up), A/D → E/A a fifth reached in contrary motion, E/A → D/D a fifth to an octave, D/D → C/C a
# parallel octave (both down): 2 parallels over 10 notes.
VOICE_LEADING = piece(*quarters(0, [G4, G4 + 2, E4 + 12, D4 + 12, C4 + 12]), *quarters(1, [C4, D4, 57, D4, C4]))


def test_parallel_perfects_by_hand():
    assert parallel_perfects_per_note(VOICE_LEADING, 2, 32) == pytest.approx(2 / 10)
    # a third voice holding a C3 moves with neither: the count stays 2, over 11 notes
    assert parallel_perfects_per_note(np.vstack([VOICE_LEADING, [[2, 0, 20, 48]]]), 3, 32) == pytest.approx(2 / 11)
    # the same fifth re-struck is no motion; a rest before the second fifth breaks the progression
    assert parallel_perfects_per_note(piece(*quarters(0, [G4, G4]), *quarters(1, [C4, C4])), 2, 16) == 0.0
    rest_between = piece((0, 0, 4, G4), (0, 8, 4, G4 + 2), (1, 0, 4, C4), (1, 8, 4, D4))
    assert parallel_perfects_per_note(rest_between, 2, 16) == 0.0
    # one voice moving a step later (C–G, then D–G, then D–A) is not parallel motion at either step
    staggered = piece((0, 0, 8, G4), (0, 8, 8, G4 + 2), (1, 0, 4, C4), (1, 4, 12, D4))
    assert parallel_perfects_per_note(staggered, 2, 16) == 0.0
    # a parallel unison counts (an octave class); a fifth to a twelfth counts in parallel motion (mod 12),
    # not in contrary motion
    assert parallel_perfects_per_note(piece(*quarters(0, [C4, D4]), *quarters(1, [C4, D4])), 2, 8) == 0.25
    assert parallel_perfects_per_note(piece(*quarters(0, [G4, E4 + 12]), *quarters(1, [C4, 57])), 2, 8) == 0.0
    assert parallel_perfects_per_note(piece(*quarters(0, [G4, G4 + 14]), *quarters(1, [C4, D4])), 2, 8) == 0.25
    assert math.isnan(parallel_perfects_per_note(piece(), 2, 16))


def test_parallel_perfects_on_a_slice_hears_the_note_held_in():
    # measure 0: G4 over C4 held into measure 1, where both move up to A4/D4 at its first step
    # (step 0 of the slice: nothing before it there → not counted) and on to B4/E4 (a parallel fifth).
    notes = piece((0, 0, 16, G4), (0, 16, 4, G4 + 2), (0, 20, 4, G4 + 4),
                  (1, 0, 16, C4), (1, 16, 4, D4), (1, 20, 4, E4))
    assert musical_statistics(notes, 2, 1, 1)["parallel_perfects_per_note"] == pytest.approx(1 / 4)
    # with the moving notes one step later, step 0 of the slice holds G/C from before: 2 parallels
    later = piece((0, 0, 17, G4), (0, 17, 3, G4 + 2), (0, 20, 4, G4 + 4),
                  (1, 0, 17, C4), (1, 17, 3, D4), (1, 20, 4, E4))
    assert musical_statistics(later, 2, 1, 1)["parallel_perfects_per_note"] == pytest.approx(2 / 4)


def test_out_of_range_share_by_hand():
    # soprano 82 (above 81), 81; alto 52 (below 53), 60; tenor 60, 48; bass 35 (below 36), 64 → 3 of 8
    notes = piece(*quarters(0, [82, 81]), *quarters(1, [52, 60]), *quarters(2, [60, 48]), *quarters(3, [35, 64]))
    assert out_of_range_share(notes, 4) == 3 / 8
    # held in from before the slice: sounds, but only onsets are counted
    assert out_of_range_share(piece((0, -4, 8, 90), (0, 4, 4, 70)), 4) == 0.0
    assert math.isnan(out_of_range_share(notes[:4], 3))  # the ranges are those of four voices
    assert math.isnan(out_of_range_share(piece(), 4))


def test_out_of_range_share_undoes_the_key_shift():
    # a soprano A5 (81) in the data that was transposed up 2 semitones sounds G5: in range; one
    # transposed down 2 sounded B5 (83): out. musical_statistics passes the shift through.
    soprano = piece((0, 0, 4, 81), (0, 4, 4, 82))
    assert out_of_range_share(soprano, 4, key_shift=0) == 0.5
    assert out_of_range_share(soprano, 4, key_shift=2) == 0.0
    assert out_of_range_share(soprano, 4, key_shift=-2) == 1.0
    assert musical_statistics(soprano, 4, 0, 1, key_shift=2)["out_of_range_share"] == 0.0
    assert musical_statistics(soprano + [0, 0, 0, 2], 4, 0, 1, key_shift=2)["out_of_range_share"] == 0.5


def test_note_length_entropy_by_hand():
    assert note_length_entropy(piece(*quarters(0, [60, 62, 64, 65]))) == 0.0
    quarter_and_half = piece((0, 0, 4, 60), (0, 4, 4, 62), (0, 8, 8, 64), (0, 16, 8, 65))
    assert note_length_entropy(quarter_and_half) == pytest.approx(1.0)
    # per voice then averaged: each voice has a single length → 0 (pooled it would be 1 bit)
    per_voice = piece((0, 0, 4, 60), (1, 0, 8, 48))
    assert note_length_entropy(per_voice) == 0.0
    # durations 1, 2, 4, 8 once each → 2 bits
    assert note_length_entropy(piece((0, 0, 1, 60), (0, 1, 2, 60), (0, 3, 4, 60), (0, 7, 8, 60))) == pytest.approx(2)
    assert math.isnan(note_length_entropy(piece()))


def test_onsets_and_distinct_pitches_by_hand():
    # voice 0: 4 quarters C D C D in measure 0 and a whole note E in measure 1 → 5 onsets, 3 pitches
    # voice 1: one whole note C3 over both measures → 1 onset, 1 pitch
    notes = piece(*quarters(0, [C4, D4, C4, D4]), (0, 16, 16, E4), (1, 0, 32, 48))
    assert onsets_per_measure(notes, n_voices=2, n_measures=2) == 6 / 4
    assert distinct_pitches_per_voice(notes, n_voices=2) == (3 + 1) / 2
    assert distinct_pitches_per_voice(notes, n_voices=4) == (3 + 1) / 4  # silent voices count 0
    assert onsets_per_measure(piece(), 4, 2) == 0.0
    assert math.isnan(distinct_pitches_per_voice(piece(), 4))


def test_musical_statistics_on_a_slice():
    # voice 1 holds C from step 0 to 24, into the slice (measure 1) where voice 0 plays D:
    # it sounds (dissonance 1) but is not an onset of the slice.
    notes = piece((1, 0, 24, C4), (0, 16, 8, D4), (0, 24, 8, E4), (0, 32, 16, G4))
    sliced = slice_measures(notes, 1, 1)
    assert sliced.tolist() == [[1, -16, 24, C4], [0, 0, 8, D4], [0, 8, 8, E4]]  # G4 (measure 2) cut out
    stats = musical_statistics(notes, n_voices=2, first_measure=1, n_measures=1)
    assert stats["onsets_per_measure"] == 2 / 2
    assert stats["distinct_pitches_per_voice"] == (2 + 0) / 2
    assert stats["note_length_entropy"] == 0.0  # voice 0: two half notes (8 steps each)
    assert stats["dissonance_rate"] == 1.0  # steps 0–7 of the slice: C against D; then one voice
    assert math.isnan(stats["repeat_rate"])  # one measure: nothing to compare
    # a note running past the slice end is cut there
    assert slice_measures(piece((0, 8, 16, C4)), 0, 1).tolist() == [[0, 8, 8, C4]]


def test_pitch_class_distance_by_hand():
    c_major = piece((0, 0, 4, C4), (0, 4, 4, E4), (0, 8, 4, G4))
    assert pitch_class_distance(c_major, c_major + [0, 0, 0, 12]) == 0.0  # octaves share classes
    assert pitch_class_distance(piece((0, 0, 4, C4)), piece((0, 0, 4, D4))) == 1.0
    # p = {C: 1}, q = {C: 8/16, G: 8/16} (duration-weighted) → 0.5·(0.5 + 0.5) = 0.5
    assert pitch_class_distance(piece((0, 0, 4, C4)), piece((0, 0, 8, C4), (1, 0, 8, G4))) == 0.5
    assert math.isnan(pitch_class_distance(piece(), c_major))


def test_mean_ci():
    mean, low, high = mean_ci([1, 2, 3])
    # s = 1, half-width t(0.975, 2) · 1/√3 = 4.303 · 0.577 = 2.484
    assert mean == 2.0
    assert high - mean == pytest.approx(2.484, abs=1e-3)
    assert mean - low == pytest.approx(2.484, abs=1e-3)
    assert mean_ci([1, 2, 3, float("nan")]) == (mean, low, high)
    single = mean_ci([5.0])
    assert single[0] == 5.0 and math.isnan(single[1]) and math.isnan(single[2])
    assert all(math.isnan(x) for x in mean_ci([]))


# --------------------------------------------------------------------------- token accuracy

RANGE = PitchRange(60, 63)  # P = 4: onsets 0..3, rest 4, hold 5
R, H = RANGE.rest, RANGE.hold
TRUTH = np.array([[0, H, 0, H],   # voice 0: C held, C re-struck, held
                  [R, 2, H, H]])  # voice 1: rest, D held
PRED = np.array([[0, H, H, H],    # holds through the re-strike: wrong token, right sounding pitch
                 [R, 2, H, 3]])   # last step: a new note instead of the hold


def test_token_accuracy_by_hand():
    result = token_accuracy(PRED, TRUTH, RANGE)
    # equal tokens: voice 0 = 3/4 (step 2), voice 1 = 3/4 (step 3) → all 6/8
    assert result["all"] == 0.75 and result["voice_0"] == 0.75 and result["voice_1"] == 0.75
    # truth onsets: (v0, s0) hit, (v0, s2) miss (hold), (v1, s1) hit → 2/3
    assert result["onsets"] == pytest.approx(2 / 3)
    # sounding pitch at those onsets: C, C (held from step 0), D → 3/3
    assert result["pitches"] == 1.0
    # a hold at step 0 sounds nothing; rests do not sound the truth pitch
    assert token_accuracy(np.array([[H, H, H, H]]), np.array([[1, H, H, H]]), RANGE)["pitches"] == 0.0


def test_token_accuracy_mask_batch_and_torch():
    # mask out voice 0: voice 1 alone → all 3/4, onsets 1/1, pitches 1/1
    masked = token_accuracy(PRED, TRUTH, RANGE, mask=np.array([False, True]))
    assert masked["all"] == 0.75 and masked["onsets"] == 1.0 and math.isnan(masked["voice_0"])
    # a (B, T, V, S) batch of copies gives the same shares; torch tensors are accepted
    batch = token_accuracy(torch.tensor(np.stack([[PRED] * 3] * 2)), torch.tensor(np.stack([[TRUTH] * 3] * 2)), RANGE)
    assert batch == pytest.approx(token_accuracy(PRED, TRUTH, RANGE))
    assert all(type(value) is float for value in batch.values())


def test_baselines_by_hand():
    hold = always_hold_baseline(TRUTH, RANGE)
    # truth holds: 2 in voice 0, 2 in voice 1 → 4/8; a hold is never an onset, and at the rest (v1, s0) it is wrong
    assert hold["all"] == 0.5 and hold["onsets"] == 0.0 and hold["pitches"] == 0.0
    previous = np.array([[0, H, 0, H],   # voice 0 repeats exactly
                         [R, R, R, R]])  # voice 1 rested: only step 0 matches
    repeat = repeat_last_measure_baseline(previous, TRUTH, RANGE)
    assert repeat["all"] == 5 / 8 and repeat["voice_0"] == 1.0 and repeat["voice_1"] == 0.25
    assert repeat["onsets"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- folders and the anchors table

def test_folder_statistics_recurses_and_lists_bad_files(tmp_path):
    from rmvae.render import notes_to_midi

    # C major only (C E G in every frame), the same measure four times
    measure = quarters(0, [72, 76, 79, 76]) + quarters(1, [67, 67, 64, 64]) + [(2, 0, 16, 60), (3, 0, 16, 48)]
    notes = piece(*[(v, s + 16 * m, d, p) for m in range(4) for v, s, d, p in measure])
    notes_to_midi(notes, tmp_path / "deep" / "er" / "good.mid")
    notes_to_midi(notes[:8], tmp_path / "short.mid")
    (tmp_path / "broken.midi").write_bytes(b"not a midi file")
    result = folder_statistics(tmp_path, n_voices=4, first_measure=1, n_measures=3)
    assert result.table["file"].tolist() == ["deep/er/good.mid"]
    row = result.table.iloc[0]
    assert row["repeat_rate"] == 1.0 and row["dissonance_rate"] == 0.0
    # soprano and alto only ever move against each other; tenor and bass hold: no parallels, all in range
    assert row["parallel_perfects_per_note"] == 0.0 and row["out_of_range_share"] == 0.0
    assert row["onsets_per_measure"] == (4 + 4 + 1 + 1) / 4
    assert sorted(name for name, _ in result.skipped) == ["broken.midi", "short.mid"]
    assert result.summary.loc["repeat_rate", "mean"] == 1.0


# anchors/README.md, measures 9–16 of the 18 thesis samples, printed to two significant digits.
ANCHOR_TABLE = {"distinct_pitches_per_voice": 3.9, "repeat_rate": 0.42, "note_length_entropy": 0.43,
                "onsets_per_measure": 3.5, "dissonance_rate": 0.39}


@pytest.mark.skipif(not (ANCHORS / "thesis-samples").is_dir(),
                    reason=f"anchors not found at {ANCHORS / 'thesis-samples'} (shared/ is beside the repository)")
def test_reproduces_anchor_table():
    result = folder_statistics(ANCHORS / "thesis-samples", n_voices=4, first_measure=8, n_measures=8)
    assert len(result.table) == 18 and result.skipped == []
    for name, printed in ANCHOR_TABLE.items():
        # The README rounds to two significant digits, so the true value lies within half a unit
        # of the last printed digit (±0.05 for 3.9, ±0.005 for 0.42); allow that and no more.
        half_unit = 0.5 * 10 ** (math.floor(math.log10(printed)) - 1)
        assert result.summary.loc[name, "mean"] == pytest.approx(printed, abs=half_unit + 1e-9), name
