"""Evaluation metrics (docs/design.md §4): token accuracy with its trivial baselines, and musical statistics.

Pure functions on numpy arrays (torch tensors are accepted where noted); one function per
metric, each docstring gives the definition and its edge cases, in the style of
``muspy.metrics``. Inputs:

* monophonic tokens ``(..., V, S)``: ``0..P-1`` onset of pitch ``low + class``, ``P`` rest,
  ``P + 1`` hold (see :mod:`rmvae.data.notes`);
* note lists ``(N, 4)`` of ``(voice, start, duration, pitch)`` in sixteenth steps. A note with a
  negative start sounded before the analysed slice: it *sounds* in the slice but is not an
  onset of it (:func:`musical_statistics` makes such lists).

The statistics reproduce the table of ``anchors/README.md`` (thesis samples, measures 9–16:
3.9 / 0.42 / 0.43 bits / 3.5 / 0.39). Two definitions are per voice because only those give the
table's numbers (see :func:`repeat_rate` and :func:`note_length_entropy`).
The two voice-leading statistics (:func:`parallel_perfects_per_note`, :func:`out_of_range_share`)
are not in that table; they check what the chorale style forbids, which the others cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rmvae.config import STEPS_PER_MEASURE
from rmvae.data.notes import DURATION, PITCH, START, VOICE, PitchRange
from rmvae.intervals import mean_ci

DISSONANT_INTERVALS = (1, 2, 6, 10, 11)  # semitones mod 12: seconds, tritone, sevenths
REPEAT_WINDOW = 4  # a measure "repeats" when it equals one of the previous four
PERFECT_CLASSES = (0, 7)  # semitones mod 12: unison/octave, fifth (parallels of these are avoided in chorales)
# Sounding MIDI range of each voice in Bach's four-part chorales, inclusive: soprano, alto, tenor, bass.
VOICE_RANGES = ((57, 81), (53, 74), (48, 69), (36, 64))
STATISTICS = ("distinct_pitches_per_voice", "repeat_rate", "note_length_entropy",
              "onsets_per_measure", "dissonance_rate", "parallel_perfects_per_note", "out_of_range_share")


# --------------------------------------------------------------------------- accuracy

def _numpy(array) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (no torch import needed)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _share(hits: np.ndarray, where: np.ndarray) -> float:
    """Mean of ``hits`` over ``where``; NaN when nothing is selected."""
    total = where.sum()
    return float((hits & where).sum() / total) if total else float("nan")


def _sounding_class(tokens: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
    """Pitch class index sounding at every step, ``-1`` for silence, carried along the S axis.

    A hold repeats the value of the previous step; a hold at the first step of the measure (or
    after a rest) sounds nothing, as in :func:`rmvae.data.notes.tokens_to_notes`.
    """
    sounding = np.where(tokens < pitch_range.n_pitches, tokens, -1).astype(np.int64)
    for step in range(1, tokens.shape[-1]):
        held = tokens[..., step] == pitch_range.hold
        sounding[..., step] = np.where(held, sounding[..., step - 1], sounding[..., step])
    return sounding


def token_accuracy(pred, truth, pitch_range: PitchRange, mask=None) -> dict[str, float]:
    """Accuracy of decoded monophonic tokens against the truth (docs/design.md §4.2).

    Args:
        pred, truth: int tokens ``(..., V, S)``, numpy or torch (e.g. ``(B, V, S)`` for one
            target measure or ``(B, T, V, S)``).
        pitch_range: gives ``P`` (onsets are tokens ``< P``), the rest and hold tokens.
        mask: optional ``(..., V)`` bool/0-1, broadcast over the steps: which voices (and
            measures) count, e.g. only the voice that was filled.

    Returns:
        Python floats:
        ``all``: share of voice-steps whose token equals the truth.
        ``onsets``: over steps whose truth is an onset, share predicted as the same onset.
        ``pitches``: over steps whose truth is an onset, share where the *sounding* predicted
        pitch is the truth pitch: a predicted onset of that pitch, or a hold that sustains it
        from an earlier predicted onset of the same measure (holds are carried along the 16
        steps only; a hold at step 0 sounds nothing). So ``pitches >= onsets``.
        ``voice_{v}``: ``all`` restricted to voice ``v``.
        A share with nothing to average (no onsets, fully masked) is NaN.
    """
    pred, truth = _numpy(pred).astype(np.int64), _numpy(truth).astype(np.int64)
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} must have the same (..., V, S) shape")
    where = np.ones(truth.shape, dtype=bool)
    if mask is not None:
        where &= np.broadcast_to(_numpy(mask).astype(bool)[..., None], truth.shape)
    equal = pred == truth
    onset = truth < pitch_range.n_pitches
    same_sound = _sounding_class(pred, pitch_range) == truth
    result = {"all": _share(equal, where),
              "onsets": _share(equal, where & onset),
              "pitches": _share(same_sound, where & onset)}
    for voice in range(truth.shape[-2]):
        result[f"voice_{voice}"] = _share(equal[..., voice, :], where[..., voice, :])
    return result


def always_hold_baseline(truth, pitch_range: PitchRange, mask=None) -> dict[str, float]:
    """:func:`token_accuracy` of predicting *hold* at every step of ``truth`` ``(..., V, S)``.

    A hold where the truth is a rest or an onset counts wrong, so ``onsets`` and ``pitches``
    are 0 (a hold at step 0 sounds nothing). ``all`` is the share of holds in the truth (about
    0.72 on the chorales, docs/design.md §1.5).
    """
    truth = _numpy(truth)
    return token_accuracy(np.full(truth.shape, pitch_range.hold), truth, pitch_range, mask)


def repeat_last_measure_baseline(previous, truth, pitch_range: PitchRange, mask=None) -> dict[str, float]:
    """:func:`token_accuracy` of predicting that each target measure equals the measure before.

    Args:
        previous: tokens ``(..., V, S)`` of the measure preceding each target measure.
        truth: the target tokens, same shape.
    """
    return token_accuracy(previous, truth, pitch_range, mask)


# --------------------------------------------------------------------------- musical statistics

def _as_notes(notes) -> np.ndarray:
    notes = np.asarray(notes, dtype=np.int64)
    return notes.reshape(0, 4) if notes.size == 0 else notes


def distinct_pitches_per_voice(notes, n_voices: int) -> float:
    """Mean over voices of the number of distinct MIDI pitches (octaves differ) among the onsets.

    Notes with a negative start (sounding in from before the slice) are not counted. A voice
    without onsets counts 0. No onsets at all → NaN.
    """
    notes = _as_notes(notes)
    notes = notes[notes[:, START] >= 0]
    if len(notes) == 0:
        return float("nan")
    return float(np.mean([len(np.unique(notes[notes[:, VOICE] == v, PITCH])) for v in range(n_voices)]))


def _measure_contents(notes: np.ndarray, voice: int, n_measures: int) -> list[frozenset]:
    """Per measure, the set of (onset step or -1 if tied in, end step clipped to 16, pitch) of a voice."""
    contents = [set() for _ in range(n_measures)]
    for _, start, duration, pitch in notes[notes[:, VOICE] == voice]:
        end = start + duration
        for measure in range(max(start, 0) // STEPS_PER_MEASURE,
                             min(-(-end // STEPS_PER_MEASURE), n_measures)):
            origin = measure * STEPS_PER_MEASURE
            onset = start - origin if start >= origin else -1
            contents[measure].add((int(onset), int(min(end - origin, STEPS_PER_MEASURE)), int(pitch)))
    return [frozenset(c) for c in contents]


def repeat_rate(notes, n_voices: int, n_measures: int) -> float:
    """Share of (voice, measure) pairs, from the 2nd measure on, equal to one of that voice's previous four measures.

    A voice's measure is the set of its notes there as (onset step in the measure, or −1 for a
    note held in from before; end step clipped at the barline; pitch): exactly the voice's 16
    tokens, plus the pitch of a held-in note. Only measures of ``[0, n_measures)`` are compared
    (the window is cut at measure 0, so measure 1 has one candidate, measure 4 on have four).
    Empty (all-rest) measures equal each other.

    Per voice, not the whole measure: the anchors table (0.42 on the thesis samples) is only
    reproduced this way; whole four-voice measures repeat in 0.07 of cases there.

    Edge cases: ``n_measures < 2`` or no notes → NaN.
    """
    notes = _as_notes(notes)
    if n_measures < 2 or len(notes) == 0:
        return float("nan")
    hits = []
    for voice in range(n_voices):
        contents = _measure_contents(notes, voice, n_measures)
        for measure in range(1, n_measures):
            hits.append(contents[measure] in contents[max(0, measure - REPEAT_WINDOW):measure])
    return float(np.mean(hits))


def _entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.0"


def note_length_entropy(notes) -> float:
    """Shannon entropy (bits) of note durations in sixteenths, per voice, averaged over voices.

    For each voice with at least one onset, the entropy of the empirical distribution of its
    note durations; the result is the mean over those voices. Per voice because the anchors
    table (0.43 bits on the thesis samples) is reproduced this way; pooling the four voices
    gives 0.60 there. Only quarters → 0; quarters and halves in equal counts → 1 bit.

    Notes with a negative start are not counted. No onsets → NaN.
    """
    notes = _as_notes(notes)
    notes = notes[notes[:, START] >= 0]
    if len(notes) == 0:
        return float("nan")
    return float(np.mean([_entropy_bits(notes[notes[:, VOICE] == v, DURATION])
                          for v in np.unique(notes[:, VOICE])]))


def onsets_per_measure(notes, n_voices: int, n_measures: int) -> float:
    """Note onsets per measure per voice: onsets with ``start >= 0`` / (n_measures · n_voices).

    No notes gives 0 (silence is a valid answer here); ``n_measures`` or ``n_voices`` < 1 → NaN.
    A chord counts one onset per note.
    """
    notes = _as_notes(notes)
    if n_measures < 1 or n_voices < 1:
        return float("nan")
    return float((notes[:, START] >= 0).sum() / (n_measures * n_voices))


def _pitch_class_roll(notes: np.ndarray, n_voices: int, n_steps: int) -> np.ndarray:
    """``(V, n_steps, 12)`` bool: which pitch classes each voice sounds at each step."""
    roll = np.zeros((n_voices, n_steps, 12), dtype=bool)
    for voice, start, duration, pitch in notes:
        if 0 <= voice < n_voices:
            roll[voice, max(start, 0):max(0, min(start + duration, n_steps)), pitch % 12] = True
    return roll


def dissonance_rate(notes, n_voices: int, n_steps: int) -> float:
    """Share of sounding frames that contain a dissonant interval between two voices.

    A frame is a sixteenth step of ``[0, n_steps)``; it is *sounding* when at least two voices
    sound a note there (held notes count, also ones with a negative start). It is dissonant
    when two notes of *different* voices are 1, 2, 6, 10 or 11 semitones apart mod 12 (minor and
    major seconds, tritone, sevenths; ninths count as seconds). Unisons and octaves are
    consonant, so are fourths. Intervals within one voice (a chord) are ignored.

    No sounding frame → NaN. C-E-G together → 0; C and D together → 1.
    """
    notes = _as_notes(notes)
    roll = _pitch_class_roll(notes, n_voices, n_steps).astype(np.int64)
    sounding = roll.any(axis=2).sum(axis=0) >= 2  # (n_steps,)
    if not sounding.any():
        return float("nan")
    dissonant = np.zeros(n_steps, dtype=bool)
    off_diagonal = ~np.eye(n_voices, dtype=bool)
    # ordered pairs v ≠ w meet each interval i from both sides (i and 12 − i): 1, 2, 6 suffice
    for interval in sorted({min(i, 12 - i) for i in DISSONANT_INTERVALS}):
        # pairs[v, w, s] > 0 when v sounds class c and w sounds class c - interval
        pairs = np.einsum("vsc,wsc->vws", roll, np.roll(roll, interval, axis=2))
        dissonant |= (pairs[off_diagonal] > 0).any(axis=0)
    return float(dissonant[sounding].mean())


def _sounding_pitches(notes: np.ndarray, n_voices: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(V, n_steps)`` MIDI pitch each voice sounds at each step (``-1``: silence) and ``(V, n_steps)`` onsets.

    Notes are laid down in order of start, so where a voice holds two notes at once the latest
    onset sounds (a monophonic voice never has two).
    """
    pitches = np.full((n_voices, n_steps), -1, dtype=np.int64)
    onsets = np.zeros((n_voices, n_steps), dtype=bool)
    for voice, start, duration, pitch in notes[np.argsort(notes[:, START], kind="stable")]:
        if 0 <= voice < n_voices:
            pitches[voice, max(start, 0):max(0, min(start + duration, n_steps))] = pitch
            if 0 <= start < n_steps:
                onsets[voice, start] = True
    return pitches, onsets


def _parallel_perfect_steps(pitches: np.ndarray, onsets: np.ndarray) -> int:
    """Parallel fifths/octaves between two voices: ``pitches`` and ``onsets`` are ``(2, n_steps)``.

    Compares each step ``t ≥ 1`` where either voice has an onset with step ``t − 1``.
    """
    before, after = pitches[:, :-1], pitches[:, 1:]  # (2, n_steps - 1)
    sounding = ((before >= 0) & (after >= 0)).all(axis=0)
    up, down = (after > before).all(axis=0), (after < before).all(axis=0)
    interval_before = np.abs(before[0] - before[1]) % 12
    interval_after = np.abs(after[0] - after[1]) % 12
    perfect = np.isin(interval_before, PERFECT_CLASSES) & (interval_after == interval_before)
    return int((onsets[:, 1:].any(axis=0) & sounding & (up | down) & perfect).sum())


def parallel_perfects_per_note(notes, n_voices: int, n_steps: int) -> float:
    """Parallel fifths and octaves (unisons included) per note onset, over every pair of voices.

    The rule, for each unordered pair of voices and each step ``t`` of ``[1, n_steps)`` where at
    least one of the two has an onset: take the pitches they sound at ``t − 1`` and at ``t``
    (held notes count, also ones with a negative start). It counts one when both voices sound at
    both steps, both move in the same direction (both strictly up or both strictly down), the
    interval before, ``|p − q| mod 12``, is 0 (unison/octave) or 7 (fifth), and the interval after
    has that same class. A rest in either voice at either step, oblique or contrary motion, a
    fifth followed by an octave (or the reverse), and step 0 (nothing before it in the slice)
    never count. The count is divided by the number of onsets (``start >= 0``) of all voices.

    Bach avoids these progressions: 0.0004 per note (5 in 11,581 notes) in measures 9–16 of
    music21's 84 four-part 4/4 chorales of ≥ 16 measures (``benchmarks/anchor_statistics.py``);
    the thesis samples have 0.037. No onsets → NaN.
    C–G to D–A in two voices → 1 (over 4 notes: 0.25); C–G to B–A (contrary) → 0.
    """
    notes = _as_notes(notes)
    n_onsets = int((notes[:, START] >= 0).sum())
    if n_onsets == 0:
        return float("nan")
    pitches, onsets = _sounding_pitches(notes, n_voices, n_steps)
    count = sum(_parallel_perfect_steps(pitches[[v, w]], onsets[[v, w]])
                for v in range(n_voices) for w in range(v + 1, n_voices))
    return count / n_onsets


def out_of_range_share(notes, n_voices: int, key_shift: int = 0) -> float:
    """Share of note onsets outside their voice's range in Bach's chorales (:data:`VOICE_RANGES`).

    Ranges are of the *sounding* pitch, so ``key_shift`` (the transposition applied to reach
    C major / A minor, :class:`rmvae.data.midi.Score`) is subtracted first, as rendering does: a
    soprano G5 transposed up to A5 is still in range. Bounds are inclusive: soprano 57–81, alto
    53–74, tenor 48–69, bass 36–64. Notes with a negative start are not counted.

    In measures 9–16: 0 for music21's Bach chorales (the ranges are his), 0.019 for the thesis samples.
    Not four voices (the ranges are those of soprano, alto, tenor and bass) or no onsets → NaN.
    """
    notes = _as_notes(notes)
    notes = notes[notes[:, START] >= 0]
    if n_voices != len(VOICE_RANGES) or len(notes) == 0:
        return float("nan")
    low, high = np.asarray(VOICE_RANGES).T[:, notes[:, VOICE]]  # (N,) each
    pitch = notes[:, PITCH] - key_shift
    return float(((pitch < low) | (pitch > high)).mean())


def pitch_class_histogram(notes) -> np.ndarray:
    """Duration-weighted pitch-class histogram ``(12,)``, normalised to sum 1 (NaNs if no notes)."""
    notes = _as_notes(notes)
    histogram = np.bincount(notes[:, PITCH] % 12, weights=notes[:, DURATION], minlength=12).astype(float)
    total = histogram.sum()
    return histogram / total if total > 0 else np.full(12, np.nan)


def pitch_class_distance(notes, reference_notes) -> float:
    """Total variation distance between duration-weighted pitch-class histograms.

    ``0.5 · Σ_c |p_c − q_c|`` with ``p``, ``q`` from :func:`pitch_class_histogram`: 0 for the same
    pitch-class content, 1 for disjoint ones (half the L1 distance). Transposition-sensitive by
    design (compare pieces in the same key, e.g. after transposing to C/Am). Either list
    empty → NaN.
    """
    p, q = pitch_class_histogram(notes), pitch_class_histogram(reference_notes)
    if np.isnan(p).any() or np.isnan(q).any():
        return float("nan")
    return float(0.5 * np.abs(p - q).sum())


def slice_measures(notes, first_measure: int, n_measures: int) -> np.ndarray:
    """Notes sounding in measures ``[first_measure, first_measure + n_measures)``, shifted to start there.

    Notes are cut at the slice end; a note that began before the slice keeps its (negative)
    start, so it sounds but is not an onset.
    """
    notes = _as_notes(notes).copy()
    begin, end = first_measure * STEPS_PER_MEASURE, (first_measure + n_measures) * STEPS_PER_MEASURE
    keep = (notes[:, START] < end) & (notes[:, START] + notes[:, DURATION] > begin)
    notes = notes[keep]
    notes[:, DURATION] = np.minimum(notes[:, START] + notes[:, DURATION], end) - notes[:, START]
    notes[:, START] -= begin
    return notes


def musical_statistics(notes, n_voices: int, first_measure: int, n_measures: int,
                       reference_notes=None, key_shift: int = 0) -> dict[str, float]:
    """All statistics of :data:`STATISTICS` on measures ``[first_measure, first_measure + n_measures)``.

    The anchors table uses ``first_measure=8, n_measures=8`` (measures 9–16, counting from 1).
    With ``reference_notes`` (sliced the same way by the caller) ``pitch_class_distance`` is added.
    ``key_shift`` is the transposition the notes carry (pieces read transposed to C major / A
    minor); only ``out_of_range_share`` depends on the key, and it undoes the shift.
    """
    sliced = slice_measures(notes, first_measure, n_measures)
    n_steps = n_measures * STEPS_PER_MEASURE
    result = {"distinct_pitches_per_voice": distinct_pitches_per_voice(sliced, n_voices),
              "repeat_rate": repeat_rate(sliced, n_voices, n_measures),
              "note_length_entropy": note_length_entropy(sliced),
              "onsets_per_measure": onsets_per_measure(sliced, n_voices, n_measures),
              "dissonance_rate": dissonance_rate(sliced, n_voices, n_steps),
              "parallel_perfects_per_note": parallel_perfects_per_note(sliced, n_voices, n_steps),
              "out_of_range_share": out_of_range_share(sliced, n_voices, key_shift)}
    if reference_notes is not None:
        result["pitch_class_distance"] = pitch_class_distance(sliced, reference_notes)
    return result


# --------------------------------------------------------------------------- folders of MIDI files

@dataclass
class FolderStatistics:
    """Result of :func:`folder_statistics`.

    Attributes:
        table: one row per file read: ``file`` (relative path), ``n_measures`` and every statistic.
        summary: one row per statistic: ``mean``, ``low``, ``high`` (95% t-interval), ``n``.
        skipped: ``(relative path, reason)`` for each file not used.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)


def summarize(table: pd.DataFrame, columns=STATISTICS, confidence: float = 0.95) -> pd.DataFrame:
    """Mean and t-interval of each statistic column over the rows (files)."""
    rows = {}
    for column in columns:
        mean, low, high = mean_ci(table[column].to_numpy(dtype=float) if len(table) else [], confidence)
        rows[column] = dict(mean=mean, low=low, high=high,
                            n=int(table[column].notna().sum()) if len(table) else 0)
    return pd.DataFrame.from_dict(rows, orient="index")


def folder_statistics(folder, n_voices: int = 4, first_measure: int = 8, n_measures: int = 8) -> FolderStatistics:
    """:func:`musical_statistics` of every ``.mid``/``.midi`` under ``folder`` (recursively).

    Files are read with :func:`rmvae.data.midi.read_midi`: one non-drum instrument with notes per
    voice, highest mean pitch first, times rounded to sixteenths, the file starting on a
    downbeat, not transposed. A file that cannot be read, is not in 4/4, has another number of
    voices or is shorter than ``first_measure + n_measures`` measures is listed in ``skipped``
    with the reason.
    """
    from rmvae.data.midi import read_midi  # pretty_midi is heavy: import only when reading files

    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in {".mid", ".midi"})
    rows, skipped = [], []
    for path in paths:
        name = path.relative_to(folder).as_posix()
        try:
            score = read_midi(path, n_voices=n_voices)
        except Exception as error:  # any unusable file is reported, never fatal
            skipped.append((name, f"{type(error).__name__}: {error}"))
            continue
        notes, length = score.notes, score.n_measures
        if length < first_measure + n_measures:
            skipped.append((name, f"too short: {length} measures < {first_measure + n_measures}"))
            continue
        rows.append(dict(file=name, n_measures=length,
                         **musical_statistics(notes, n_voices, first_measure, n_measures,
                                              key_shift=score.key_shift)))
    table = pd.DataFrame(rows, columns=["file", "n_measures", *STATISTICS])
    return FolderStatistics(table=table, summary=summarize(table), skipped=skipped)
