"""The player's part: live MIDI notes quantised to the grid, or a MIDI file standing in for the player.

Both players hand the engine a note list ``(N, 4)`` = (voice, start, duration, pitch) in
sixteenth steps, the player's voice index in the voice column, as it was played (chords and
out-of-range pitches included: that is what gets recorded). :func:`measure_tokens` turns it
into the model's input for one measure: the highest note of a chord (the lowest for the bass,
the last voice), folded into the model's pitch range.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from rmvae.config import STEPS_PER_MEASURE, DataConfig
from rmvae.data.datamodule import low_voices
from rmvae.data.notes import DURATION, PITCH, START, VOICE, PitchRange, notes_to_tokens
from rmvae.errors import UserError
from rmvae.band.clock import quantise


def clip_notes(notes: np.ndarray, end_step: int) -> np.ndarray:
    """Notes that start before ``end_step``, cut at ``end_step`` (each keeps ≥ 1 step)."""
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 4)
    kept = notes[notes[:, START] < end_step].copy()
    kept[:, DURATION] = np.maximum(1, np.minimum(kept[:, DURATION], end_step - kept[:, START]))
    return kept


def measure_tokens(notes: np.ndarray, measure: int, n_voices: int, pitch_range: PitchRange) -> np.ndarray:
    """Monophonic tokens ``(V, S)`` of one measure of a note list, as the training data encodes it.

    The previous measure is encoded along with it so a note tied over the bar line starts the
    measure with *note_continue*, exactly as in a whole-piece encoding. Chords keep their highest
    note (lowest for the bass) and pitches are octave-folded into ``pitch_range``
    (:func:`rmvae.data.notes.notes_to_tokens`).
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 4)
    first = (measure - 1) * STEPS_PER_MEASURE  # the window is [measure - 1, measure]
    end = (measure + 1) * STEPS_PER_MEASURE
    overlap = notes[(notes[:, START] < end) & (notes[:, START] + notes[:, DURATION] > first)].copy()
    late_start = np.maximum(overlap[:, START], first)
    overlap[:, DURATION] -= late_start - overlap[:, START]
    overlap[:, START] = late_start - first
    tokens, _ = notes_to_tokens(overlap, 2, n_voices, pitch_range, low_voices(n_voices))
    return tokens[1].astype(np.int64)


class FilePlayer:
    """A MIDI file's part played as if live; its notes are known in advance, so it can also be sounded."""

    def __init__(self, notes: np.ndarray, voice: int):
        notes = np.asarray(notes, dtype=np.int64).reshape(-1, 4).copy()
        notes[:, VOICE] = voice
        self.notes = notes[np.lexsort((notes[:, PITCH], notes[:, START]))]
        self.voice = voice

    @property
    def n_measures(self) -> int:
        end = int((self.notes[:, START] + self.notes[:, DURATION]).max()) if len(self.notes) else 0
        return -(-end // STEPS_PER_MEASURE)

    def begin(self, clock, song_start: float) -> None:
        pass

    def notes_until(self, end_step: int) -> np.ndarray:
        return clip_notes(self.notes, end_step)

    def scheduled_notes(self) -> np.ndarray | None:
        """The notes to sound on the output (a live player sounds itself)."""
        return self.notes

    def close(self) -> None:
        pass


class LivePlayer:
    """Notes arriving from a MIDI input, quantised on arrival to the nearest sixteenth.

    Note-on/off messages are fed to :meth:`handle` (from mido's callback thread) and timed with
    the engine's clock relative to the song start. A note shorter than a sixteenth lasts one
    step; a note still held when asked for is cut at the asking step.
    """

    def __init__(self, voice: int, tempo: float, thru=None):
        self.voice = voice
        self.tempo = tempo
        self.thru = thru  # callable(message) echoing the player's notes to the output, or None
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}  # pitch → start step
        self._closed: list[tuple[int, int, int, int]] = []
        self._clock = None
        self._song_start = 0.0

    def begin(self, clock, song_start: float) -> None:
        self._clock, self._song_start = clock, song_start

    def _step_now(self) -> int:
        return quantise(self._clock.now() - self._song_start, self.tempo)

    def note_on(self, pitch: int, step: int) -> None:
        with self._lock:
            if pitch in self._open:  # the same key again without a release: close the old note
                self._close(pitch, step)
            self._open[pitch] = step

    def note_off(self, pitch: int, step: int) -> None:
        with self._lock:
            if pitch in self._open:
                self._close(pitch, step)

    def _close(self, pitch: int, end: int) -> None:
        start = self._open.pop(pitch)
        self._closed.append((self.voice, start, max(1, end - start), pitch))

    def handle(self, message) -> None:
        """A mido message from the input port (other message types are ignored)."""
        if self._clock is None or message.type not in ("note_on", "note_off"):
            return
        step = self._step_now()
        if message.type == "note_on" and message.velocity > 0:
            self.note_on(message.note, step)
        else:
            self.note_off(message.note, step)
        if self.thru is not None:
            self.thru(message)

    def notes_until(self, end_step: int) -> np.ndarray:
        with self._lock:
            held = [(self.voice, start, max(1, end_step - start), pitch) for pitch, start in self._open.items()]
            notes = np.array(self._closed + held, dtype=np.int64).reshape(-1, 4)
        notes = clip_notes(notes, end_step)
        return notes[np.lexsort((notes[:, PITCH], notes[:, START]))]

    def scheduled_notes(self) -> None:
        return None

    def close(self) -> None:
        pass


def read_player_file(path: str | Path, voice: int, n_voices: int, data: DataConfig) -> tuple[FilePlayer, object]:
    """Read the part a MIDI file plays for the player: voice ``voice`` of a full score, or its only voice.

    The file is read like the training data (``data.time_signature``, transposed to C major /
    A minor if the model was trained that way; the shift is kept for the recording).

    Returns:
        The player and the :class:`~rmvae.data.midi.Score` it came from.

    Raises:
        UserError: missing or unreadable file, no notes, a voice count that is neither
            ``n_voices`` nor 1, another time signature.
    """
    from rmvae.data.midi import EmptyScoreError, DrumsOnlyError, ScoreError, VoiceCountError, read_midi

    path = Path(path)
    if not path.is_file():
        raise UserError(f"player file '{path}' does not exist")

    def read(voices: int):
        return read_midi(path, n_voices=voices, time_signature=data.time_signature, transpose=data.transpose)

    try:
        try:
            score = read(n_voices)
            notes = score.notes[score.notes[:, VOICE] == voice]
        except VoiceCountError as error:
            try:
                score = read(1)
            except VoiceCountError:
                raise UserError(f"player file '{path}': {error}; give a file with {n_voices} voices "
                                f"(voice {voice} is the player's part) or with one voice") from None
            notes = score.notes
    except (EmptyScoreError, DrumsOnlyError):
        raise UserError(f"player file '{path}' has no notes to play") from None
    except ScoreError as error:
        raise UserError(f"player file '{path}': {error}") from None
    if len(notes) == 0:
        raise UserError(f"player file '{path}' has no notes in voice {voice}")
    return FilePlayer(notes, voice), score
