"""Note lists ↔ model tensors: the monophonic token encoding and the polyphonic one (docs/design.md §1.5–1.6).

A piece is kept as a note list, an int array ``(N, 4)`` of ``(voice, start, duration, pitch)``
with start and duration in sixteenth steps from the first downbeat and pitch a MIDI number.

Monophonic tokens ``(T, V, S)`` hold one class per voice and step: ``0..P-1`` a new note of
pitch ``low + class``, ``P`` a rest, ``P + 1`` *note_continue* (the note sounding at the
previous step is held). One-hot tokens are the model's ``(T, V, S, C)`` input, ``C = P + 2``.

Polyphonic arrays ``(T, V, S, P, 2)`` hold, per pitch, an *activation* (1 at an onset) and a
*duration* (length in sixteenths at the onset, 0 elsewhere).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmvae.config import STEPS_PER_MEASURE

ENCODING_VERSION = 1  # bump when the meaning of cached arrays changes: it invalidates caches

VOICE, START, DURATION, PITCH = range(4)


@dataclass(frozen=True)
class PitchRange:
    """The pitch range shared by all voices, inclusive MIDI numbers."""

    low: int
    high: int

    @property
    def n_pitches(self) -> int:
        return self.high - self.low + 1

    @property
    def rest(self) -> int:
        return self.n_pitches

    @property
    def hold(self) -> int:
        return self.n_pitches + 1

    @property
    def n_classes(self) -> int:
        return self.n_pitches + 2

    def fold(self, pitches: np.ndarray) -> tuple[np.ndarray, int]:
        """Octave-shift pitches into the range; returns the new pitches and how many moved.

        A range narrower than an octave cannot hold every pitch class: such pitches are clipped.
        """
        pitches = np.asarray(pitches, dtype=np.int64).copy()
        outside = (pitches < self.low) | (pitches > self.high)
        below = pitches < self.low
        pitches[below] += 12 * np.ceil((self.low - pitches[below]) / 12).astype(np.int64)
        above = pitches > self.high
        pitches[above] -= 12 * np.ceil((pitches[above] - self.high) / 12).astype(np.int64)
        pitches = np.clip(pitches, self.low, self.high)
        return pitches, int(outside.sum())


def n_measures_of(notes: np.ndarray) -> int:
    """Number of whole measures needed to hold every note."""
    if len(notes) == 0:
        return 0
    end = int((notes[:, START] + notes[:, DURATION]).max())
    return -(-end // STEPS_PER_MEASURE)


def notes_to_tokens(notes: np.ndarray, n_measures: int, n_voices: int, pitch_range: PitchRange,
                    low_voices: tuple[int, ...] = ()) -> tuple[np.ndarray, int]:
    """Encode a note list as monophonic tokens ``(T, V, S)``.

    A voice that plays a chord keeps its highest note (its lowest for voices in
    ``low_voices``, e.g. the bass); a note that starts while another sounds cuts it.
    Pitches outside the range are octave-shifted into it.

    Returns:
        The tokens (int16) and the number of notes that had to be octave-shifted.
    """
    steps = n_measures * STEPS_PER_MEASURE
    grid = np.full((n_voices, steps), pitch_range.rest, dtype=np.int16)
    if len(notes) == 0:
        return grid.reshape(n_voices, n_measures, STEPS_PER_MEASURE).transpose(1, 0, 2).copy(), 0
    pitches, n_folded = pitch_range.fold(notes[:, PITCH])
    is_low = np.isin(notes[:, VOICE], low_voices)
    # Same-start notes: the kept one (highest, or lowest for low voices) comes first.
    order = np.lexsort((np.where(is_low, pitches, -pitches), notes[:, START], notes[:, VOICE]))
    last_start = {}
    for i in order:
        voice, start, duration = int(notes[i, VOICE]), int(notes[i, START]), int(notes[i, DURATION])
        if voice >= n_voices or start >= steps or duration <= 0:
            continue
        if last_start.get(voice) == start:
            continue  # a chord: its kept note is already painted
        last_start[voice] = start
        grid[voice, start] = pitches[i] - pitch_range.low
        grid[voice, start + 1:min(start + duration, steps)] = pitch_range.hold
    tokens = grid.reshape(n_voices, n_measures, STEPS_PER_MEASURE).transpose(1, 0, 2)  # (T, V, S)
    return np.ascontiguousarray(tokens), n_folded


def tokens_to_notes(tokens: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
    """Decode monophonic tokens ``(T, V, S)`` to a note list; a hold after a rest stays a rest."""
    n_measures, n_voices, _ = tokens.shape
    grid = np.asarray(tokens).transpose(1, 0, 2).reshape(n_voices, -1)  # (V, T·S)
    notes = []
    for voice in range(n_voices):
        row = grid[voice]
        onsets = np.flatnonzero(row < pitch_range.n_pitches)
        for start in onsets:
            end = start + 1
            while end < len(row) and row[end] == pitch_range.hold:
                end += 1
            notes.append((voice, start, end - start, pitch_range.low + int(row[start])))
    if not notes:
        return np.zeros((0, 4), dtype=np.int64)
    notes = np.array(notes, dtype=np.int64)
    return notes[np.lexsort((notes[:, PITCH], notes[:, START], notes[:, VOICE]))]


def tokens_to_onehot(tokens: np.ndarray, n_classes: int) -> np.ndarray:
    """``(..., S)`` int tokens → ``(..., S, C)`` float32 one-hot."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(tokens, dtype=np.int64)]


def notes_to_poly(notes: np.ndarray, n_measures: int, n_voices: int,
                  pitch_range: PitchRange) -> tuple[np.ndarray, int]:
    """Encode a note list as ``(T, V, S, P, 2)`` activation/duration; returns it and the fold count."""
    steps = n_measures * STEPS_PER_MEASURE
    roll = np.zeros((n_voices, steps, pitch_range.n_pitches, 2), dtype=np.float32)
    if len(notes):
        pitches, n_folded = pitch_range.fold(notes[:, PITCH])
        keep = (notes[:, VOICE] < n_voices) & (notes[:, START] < steps) & (notes[:, DURATION] > 0)
        v, s, d = notes[keep, VOICE], notes[keep, START], notes[keep, DURATION]
        p = pitches[keep] - pitch_range.low
        roll[v, s, p, 0] = 1.0
        roll[v, s, p, 1] = np.maximum(roll[v, s, p, 1], d.astype(np.float32))
    else:
        n_folded = 0
    poly = roll.reshape(n_voices, n_measures, STEPS_PER_MEASURE, pitch_range.n_pitches, 2)
    return np.ascontiguousarray(poly.transpose(1, 0, 2, 3, 4)), n_folded


def tokens_to_poly(tokens: np.ndarray, durations: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
    """Tokens ``(..., S)`` and their onset durations → ``(..., S, P, 2)`` float32 activation/duration."""
    poly = np.zeros(tokens.shape + (pitch_range.n_pitches, 2), dtype=np.float32)
    onset = tokens < pitch_range.n_pitches
    index = np.nonzero(onset)
    pitch = tokens[onset].astype(np.int64)
    poly[index + (pitch, np.zeros_like(pitch))] = 1.0
    poly[index + (pitch, np.ones_like(pitch))] = durations[onset]
    return poly


def poly_to_notes(poly: np.ndarray, pitch_range: PitchRange, threshold: float = 0.5) -> np.ndarray:
    """Decode ``(T, V, S, P, 2)``: a note wherever activation ≥ threshold, length = rounded duration ≥ 1."""
    n_measures, n_voices, steps, n_pitches, _ = poly.shape
    flat = np.asarray(poly).transpose(1, 0, 2, 3, 4).reshape(n_voices, n_measures * steps, n_pitches, 2)
    voice, start, pitch = np.nonzero(flat[..., 0] >= threshold)
    duration = np.maximum(1, np.rint(flat[voice, start, pitch, 1])).astype(np.int64)
    notes = np.stack([voice, start, duration, pitch + pitch_range.low], axis=1).astype(np.int64)
    if len(notes) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    return notes[np.lexsort((notes[:, PITCH], notes[:, START], notes[:, VOICE]))]
