"""Reading scores into note lists: MIDI files (pretty_midi) and music21 scores.

Both readers return a :class:`Score`: notes quantised to sixteenth steps, one voice per part,
bar lines on multiples of 16 steps (a pickup is padded with rests), optionally transposed to
C major / A minor with the shift remembered so rendering can restore the key.

Every reason to refuse a file is a :class:`ScoreError` subclass with a one-line message; the
corpus builder lists them in its manifest instead of crashing.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from rmvae.config import STEPS_PER_MEASURE
from rmvae.data.notes import PITCH, START, VOICE, n_measures_of
from rmvae.data import transpose as transposition


class ScoreError(ValueError):
    """A file cannot be used as a piece; the message is the one-line reason."""


class NotMidiError(ScoreError):
    pass


class EmptyScoreError(ScoreError):
    pass


class DrumsOnlyError(ScoreError):
    pass


class VoiceCountError(ScoreError):
    pass


class NotFourFourError(ScoreError):
    pass


@dataclass(frozen=True)
class Score:
    """One piece as a note list ``(N, 4)`` = (voice, start, duration, pitch), steps of a sixteenth."""

    name: str
    notes: np.ndarray
    n_voices: int
    n_measures: int
    key_shift: int = 0  # semitones added to reach C major / A minor (0 if not transposed)
    key_number: int | None = None  # pretty_midi key number of the original key, if known
    tempo: float = 120.0
    pickup_steps: int = 0  # rests padded before the first note so bar lines fall on measures

    def transposed(self, shift: int) -> "Score":
        notes = self.notes.copy()
        notes[:, PITCH] += shift
        return replace(self, notes=notes, key_shift=self.key_shift + shift)


def _finish(name: str, notes: list[tuple[int, int, int, int]], n_voices: int, transpose: bool,
            key_number: int | None, tempo: float, pickup_steps: int, drums_seen: bool = False) -> Score:
    if not notes:
        if drums_seen:
            raise DrumsOnlyError("only drum tracks, no pitched notes")
        raise EmptyScoreError("no notes")
    array = np.array(notes, dtype=np.int64)
    array[:, START] += pickup_steps
    array = array[np.lexsort((array[:, PITCH], array[:, START], array[:, VOICE]))]
    score = Score(name=name, notes=array, n_voices=n_voices, n_measures=n_measures_of(array),
                  key_number=key_number, tempo=tempo, pickup_steps=pickup_steps)
    if transpose:
        score = score.transposed(transposition.shift_to_c(score.notes, key_number))
    return score


def _expected_signature(time_signature: str) -> tuple[int, int]:
    numerator, denominator = time_signature.split("/")
    return int(numerator), int(denominator)


def read_midi(path: str | Path, n_voices: int = 4, time_signature: str = "4/4", transpose: bool = False,
              pickup_beats: float = 0.0) -> Score:
    """Read a MIDI file: every non-drum instrument with notes is one voice, highest first.

    Voices are ordered by mean pitch, highest first (soprano … bass), whatever the track order.
    A MIDI file carries no notion of a pickup, so it is taken to start on a downbeat unless
    ``pickup_beats`` (quarter notes) says how long the anacrusis is.

    Raises:
        NotMidiError, EmptyScoreError, DrumsOnlyError, VoiceCountError, NotFourFourError.
    """
    import pretty_midi

    path = Path(path)
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # pretty_midi/mido raise many types for garbage input
        detail = str(error).splitlines()[0][:80] if str(error) else type(error).__name__
        raise NotMidiError(f"not a readable MIDI file ({detail})") from None
    wanted = _expected_signature(time_signature)
    for change in midi.time_signature_changes:
        if (change.numerator, change.denominator) != wanted:
            raise NotFourFourError(f"time signature {change.numerator}/{change.denominator}; "
                                   f"only {time_signature} is used")
    pitched = [inst for inst in midi.instruments if not inst.is_drum and inst.notes]
    drums_seen = any(inst.is_drum and inst.notes for inst in midi.instruments)
    if not pitched:
        if drums_seen:
            raise DrumsOnlyError("only drum tracks, no pitched notes")
        raise EmptyScoreError("no notes")
    if len(pitched) != n_voices:
        raise VoiceCountError(f"{len(pitched)} voice(s) with notes, {n_voices} asked")
    pitched.sort(key=lambda inst: -np.mean([n.pitch for n in inst.notes]))
    ticks_per_step = midi.resolution / 4
    notes = []
    for voice, instrument in enumerate(pitched):
        for note in instrument.notes:
            start = int(round(midi.time_to_tick(note.start) / ticks_per_step))
            end = int(round(midi.time_to_tick(note.end) / ticks_per_step))
            notes.append((voice, start, max(1, end - start), note.pitch))
    key_number = midi.key_signature_changes[0].key_number if midi.key_signature_changes else None
    tempo = float(midi.get_tempo_changes()[1][0]) if len(midi.get_tempo_changes()[1]) else 120.0
    pickup_steps = _pickup_padding(pickup_beats)
    return _finish(path.stem, notes, n_voices, transpose, key_number, tempo, pickup_steps, drums_seen)


def _pickup_padding(pickup_beats: float) -> int:
    """Rests to insert so that a pickup of ``pickup_beats`` quarters ends on a bar line."""
    pickup_steps = int(round(pickup_beats * 4)) % STEPS_PER_MEASURE
    return (STEPS_PER_MEASURE - pickup_steps) % STEPS_PER_MEASURE


def read_music21(source, n_voices: int = 4, time_signature: str = "4/4", transpose: bool = False,
                 name: str | None = None) -> Score:
    """Read a music21 score (or a path music21 can parse): one part = one voice, in score order.

    Ties are merged, a chord keeps all its pitches (the encoding then keeps the highest), grace
    notes are dropped, and a pickup measure is padded with rests.

    Raises:
        EmptyScoreError, VoiceCountError, NotFourFourError, ScoreError (unparseable file).
    """
    import music21

    if isinstance(source, (str, Path)):
        name = name or Path(source).name
        try:
            source = music21.converter.parse(str(source), forceSource=True, storePickle=False)
        except Exception as error:
            raise ScoreError(f"music21 cannot parse it ({type(error).__name__})") from None
    name = name or (source.metadata.title if source.metadata and source.metadata.title else "score")
    if not isinstance(source, music21.stream.Score):
        raise ScoreError("not a score (no parts)")
    signatures = {ts.ratioString for ts in source.recurse().getElementsByClass(music21.meter.TimeSignature)}
    if signatures - {time_signature}:
        found = " and ".join(sorted(signatures))
        raise NotFourFourError(f"time signature {found}; only {time_signature} is used")
    parts = list(source.parts)
    if len(parts) != n_voices:
        raise VoiceCountError(f"{len(parts)} part(s), {n_voices} asked")
    first_measure = parts[0].getElementsByClass(music21.stream.Measure)
    pickup_steps = 0
    if first_measure:
        measure = first_measure[0]
        bar = Fraction(measure.barDuration.quarterLength)
        length = Fraction(measure.duration.quarterLength)
        if 0 < length < bar:
            pickup_steps = int(round((bar - length) * 4))
    notes = []
    for voice, part in enumerate(parts):
        for element in part.stripTies().flatten().notes:
            length = Fraction(element.duration.quarterLength)
            if length == 0:
                continue  # grace note
            start = int(round(Fraction(element.offset) * 4))
            end = int(round((Fraction(element.offset) + length) * 4))
            for pitch in element.pitches:
                notes.append((voice, start, max(1, end - start), int(pitch.midi)))
    key_number = None
    signatures = list(source.recurse().getElementsByClass(music21.key.KeySignature))
    if signatures:
        key = signatures[0]
        mode = getattr(key, "mode", None)
        key_number = transposition.key_number_from_sharps(key.sharps, minor=(mode == "minor"))
    return _finish(name, notes, n_voices, transpose, key_number, 120.0, pickup_steps)
