"""Transposition to C major / A minor (docs/design.md §1.4, ablation `transpose`).

The shift is chosen from the key *signature*: moving the signature to no sharps or flats takes
a major key to C major and its relative minor to A minor with the same shift. The shift is the
smallest one (−6 … +5 semitones) so voices move as little as possible; it is remembered per
piece (``Score.key_shift``) and subtracted again when rendering.
"""
from __future__ import annotations

import numpy as np

from rmvae.data.notes import DURATION, PITCH


def key_number_from_sharps(sharps: int, minor: bool = False) -> int:
    """pretty_midi key number (0–11 major tonics, 12–23 minor tonics) of a key signature."""
    major_tonic = (7 * sharps) % 12
    return 12 + (major_tonic + 9) % 12 if minor else major_tonic


def relative_major_tonic(key_number: int) -> int:
    """Pitch class of the major key that shares this key's signature."""
    if key_number < 12:
        return key_number
    return (key_number - 12 + 3) % 12


def smallest_shift(pitch_class_shift: int) -> int:
    """The representative of a pitch-class shift in −6 … +5."""
    return (pitch_class_shift + 6) % 12 - 6


def estimate_key_number(notes: np.ndarray) -> int:
    """Krumhansl–Schmuckler key of a note list (music21's analysis), duration-weighted."""
    import music21

    stream = music21.stream.Stream()
    weights = np.bincount(notes[:, PITCH] % 12, weights=notes[:, DURATION], minlength=12)
    for pitch_class, weight in enumerate(weights):
        if weight > 0:
            stream.append(music21.note.Note(60 + pitch_class, quarterLength=float(weight) / 4))
    key = music21.analysis.discrete.KrumhanslSchmuckler().getSolution(stream)
    return key_number_from_sharps(key.sharps, minor=(key.mode == "minor"))


def shift_to_c(notes: np.ndarray, key_number: int | None) -> int:
    """Semitones to add so the piece reads in C major / A minor; estimates the key if unknown."""
    if key_number is None:
        key_number = estimate_key_number(notes)
    return smallest_shift(-relative_major_tonic(key_number))
