"""Writing results (docs/design.md §5): MIDI files, pianoroll PNGs and WAV audio. I/O only, no model code.

Note lists are ``(N, 4)`` int arrays of ``(voice, start, duration, pitch)``, start and duration
in sixteenth steps, as in :mod:`rmvae.data.notes`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rmvae.config import STEPS_PER_MEASURE, VOICE_NAMES
from rmvae.data.notes import DURATION, PITCH, START, VOICE

CHOIR_AAHS = 52  # General MIDI program (0-based): the chorales are vocal music
VOICE_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown",
                 "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def voice_names(n_voices: int) -> list[str]:
    """'soprano', 'alto', 'tenor', 'bass' for four voices, else 'voice 0', 'voice 1', …"""
    return list(VOICE_NAMES) if n_voices == len(VOICE_NAMES) else [f"voice {v}" for v in range(n_voices)]


def notes_to_midi(notes, path, tempo: float = 120.0, programs=None, key_shift: int = 0, n_voices: int = 4,
                  velocity: int = 90, key: int | None = None):
    """Write a note list as a MIDI file, one instrument per voice, in the original key.

    Args:
        notes: ``(N, 4)`` note list; voices must be ``< n_voices``.
        path: output ``.mid`` path (parent folders are created).
        tempo: quarter notes per minute; one sixteenth lasts ``60 / tempo / 4`` seconds.
        programs: General MIDI program per voice (0-based); default choir aahs (52) for all,
            since the corpus is chorales. Pass ``[0] * n_voices`` for piano.
        key_shift: the transposition that was *applied* to reach C major / A minor; every pitch
            is shifted by ``-key_shift`` so the file is in the original key.
        n_voices: number of instruments (a silent voice still gets one, but pretty_midi drops
            instruments without notes when it reads a file back).
        velocity: MIDI velocity of every note.
        key: pretty_midi key number (0–11 major C…B, 12–23 minor) of the restored key; when
            given, a KeySignature event is written at time 0.

    Returns:
        The ``pretty_midi.PrettyMIDI`` object that was written.

    Raises:
        ValueError: a voice index outside ``[0, n_voices)``, a duration < 1, a pitch outside
            0–127 after the shift, or a wrong number of programs.
    """
    import pretty_midi

    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 4)
    programs = [CHOIR_AAHS] * n_voices if programs is None else list(programs)
    if len(programs) != n_voices:
        raise ValueError(f"{len(programs)} programs given for {n_voices} voices")
    if len(notes) and (notes[:, VOICE].min() < 0 or notes[:, VOICE].max() >= n_voices):
        raise ValueError(f"voice indices must lie in [0, {n_voices}), got {np.unique(notes[:, VOICE]).tolist()}")
    if len(notes) and notes[:, DURATION].min() < 1:
        raise ValueError("every note needs a duration of at least one sixteenth")
    pitches = notes[:, PITCH] - key_shift
    if len(notes) and (pitches.min() < 0 or pitches.max() > 127):
        raise ValueError(f"pitches {pitches.min()}–{pitches.max()} after key_shift={key_shift} leave MIDI's 0–127")

    step = 60.0 / tempo / 4  # seconds per sixteenth
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    if key is not None:
        midi.key_signature_changes.append(pretty_midi.KeySignature(int(key), 0.0))
    for voice, (name, program) in enumerate(zip(voice_names(n_voices), programs)):
        instrument = pretty_midi.Instrument(program=int(program), name=name)
        for (_, start, duration, _), pitch in zip(notes[notes[:, VOICE] == voice], pitches[notes[:, VOICE] == voice]):
            instrument.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch),
                                                     start=start * step, end=(start + duration) * step))
        midi.instruments.append(instrument)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return midi


def pianoroll_png(notes, path, n_voices: int, seed_measures: int = 0, title: str | None = None) -> Path:
    """Draw a note list as a pianoroll PNG: one colour per voice, bar lines, seed measures shaded.

    Args:
        notes: ``(N, 4)`` note list.
        path: output ``.png`` path.
        n_voices: number of voices (legend entries).
        seed_measures: measures with index ``< seed_measures`` are the given seed: shaded grey
            and labelled "seed"; the rest is labelled "generated".
        title: figure title.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no global backend switch
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 4)
    end = int((notes[:, START] + notes[:, DURATION]).max()) if len(notes) else STEPS_PER_MEASURE
    n_measures = max(-(-end // STEPS_PER_MEASURE), seed_measures, 1)
    low, high = (int(notes[:, PITCH].min()) - 2, int(notes[:, PITCH].max()) + 2) if len(notes) else (58, 82)

    figure = Figure(figsize=(max(6.0, 0.7 * n_measures + 2), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if seed_measures > 0:
        axes.axvspan(0, seed_measures, color="0.85", zorder=0)
        axes.axvline(seed_measures, color="black", linewidth=2, zorder=1)
        axes.text(seed_measures / 2, high, "seed", ha="center", va="top")
    if seed_measures < n_measures:
        axes.text((seed_measures + n_measures) / 2, high, "generated", ha="center", va="top")
    for bar in range(n_measures + 1):  # x axis in measures: bar lines at integers
        axes.axvline(bar, color="0.6", linewidth=0.6, zorder=1)
    names = voice_names(n_voices)
    for voice in range(n_voices):
        colour = VOICE_COLOURS[voice % len(VOICE_COLOURS)]
        for _, start, duration, pitch in notes[notes[:, VOICE] == voice]:
            axes.broken_barh([(start / STEPS_PER_MEASURE, duration / STEPS_PER_MEASURE)], (pitch - 0.4, 0.8),
                             facecolors=colour, edgecolors="black", linewidth=0.3, zorder=2)
    axes.legend(handles=[Patch(color=VOICE_COLOURS[v % len(VOICE_COLOURS)], label=names[v]) for v in range(n_voices)],
                loc="upper right", fontsize="small", framealpha=0.8)
    axes.set(xlim=(0, n_measures), ylim=(low, high + 1), xlabel="measure", ylabel="MIDI pitch",
             xticks=np.arange(n_measures) + 0.5, xticklabels=[str(m + 1) for m in range(n_measures)])
    if title:
        axes.set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def midi_to_wav(midi_path, wav_path, sample_rate: int = 22050) -> str:
    """Synthesise a MIDI file to a 16-bit mono WAV.

    Uses pretty_midi's ``fluidsynth()`` with the soundfont pretty_midi ships when pyfluidsynth
    and the fluidsynth library are installed, else pretty_midi's ``synthesize()`` (sine waves).
    The audio is peak-normalised to 0.9 and cut half a second after the last note ends
    (pretty_midi pads a full second; half is enough for the release).

    Returns:
        ``"fluidsynth"`` or ``"sine"``: the synthesiser used.
    """
    import pretty_midi
    from scipy.io import wavfile

    midi = pretty_midi.PrettyMIDI(str(midi_path))
    try:
        audio, synthesiser = midi.fluidsynth(fs=sample_rate), "fluidsynth"
    except (ImportError, OSError, ValueError, RuntimeError, AttributeError):
        audio, synthesiser = midi.synthesize(fs=sample_rate), "sine"
    audio = audio[:int(round((midi.get_end_time() + 0.5) * sample_rate))]
    peak = np.abs(audio).max() if audio.size else 0.0
    if peak > 0:
        audio = 0.9 * audio / peak
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(str(wav_path), sample_rate, (audio * 32767).astype(np.int16))
    return synthesiser
