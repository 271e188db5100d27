"""MIDI round trip, pianoroll and WAV output."""
import numpy as np
import pretty_midi
import pytest
from scipy.io import wavfile

from rmvae.render import midi_to_wav, notes_to_midi, pianoroll_png

# (voice, start, duration, pitch) in sixteenths: two measures, a tie over the bar line in the alto
NOTES = np.array([(0, 0, 4, 72), (0, 4, 4, 74), (0, 8, 8, 76), (0, 16, 16, 77),
                  (1, 0, 12, 67), (1, 12, 20, 65),
                  (2, 0, 16, 60), (2, 16, 2, 62), (2, 18, 1, 64), (2, 19, 13, 60),
                  (3, 4, 12, 48), (3, 16, 16, 41)])


def read_back(path):
    """Notes of a written file as sorted (voice, start, duration, pitch) rows, voice = instrument order."""
    midi = pretty_midi.PrettyMIDI(str(path))
    ticks_per_step = midi.resolution / 4
    rows = []
    for voice, instrument in enumerate(midi.instruments):
        for note in instrument.notes:
            start = round(midi.time_to_tick(note.start) / ticks_per_step)
            end = round(midi.time_to_tick(note.end) / ticks_per_step)
            rows.append((voice, start, end - start, note.pitch))
    return midi, sorted(rows)


@pytest.mark.parametrize("tempo", [120.0, 97.0])
def test_notes_to_midi_round_trip(tmp_path, tempo):
    notes_to_midi(NOTES, tmp_path / "piece.mid", tempo=tempo)
    midi, rows = read_back(tmp_path / "piece.mid")
    assert rows == sorted(map(tuple, NOTES.tolist()))
    assert midi.get_tempo_changes()[1][0] == pytest.approx(tempo, rel=1e-4)
    assert [i.name for i in midi.instruments] == ["soprano", "alto", "tenor", "bass"]
    assert [i.program for i in midi.instruments] == [52] * 4
    assert [(ts.numerator, ts.denominator, ts.time) for ts in midi.time_signature_changes] == [(4, 4, 0.0)]
    assert midi.get_end_time() == pytest.approx(32 * 60 / tempo / 4, abs=1e-3)  # 32 sixteenths (µs/beat rounding)


def test_notes_to_midi_restores_key_and_names(tmp_path):
    notes_to_midi(NOTES, tmp_path / "shifted.mid", key_shift=2, key=2, programs=[0, 0, 0, 0])
    midi, rows = read_back(tmp_path / "shifted.mid")
    expected = sorted((v, s, d, p - 2) for v, s, d, p in NOTES.tolist())
    assert rows == expected  # transposed down by the shift that had been applied
    assert [k.key_number for k in midi.key_signature_changes] == [2]  # D major
    assert [i.program for i in midi.instruments] == [0] * 4

    three = notes_to_midi(NOTES[NOTES[:, 0] < 2], tmp_path / "three.mid", n_voices=3)
    assert [i.name for i in three.instruments] == ["voice 0", "voice 1", "voice 2"]  # voice 2 silent
    with pytest.raises(ValueError, match="voice"):
        notes_to_midi(NOTES, tmp_path / "bad.mid", n_voices=2)
    with pytest.raises(ValueError, match="0–127"):
        notes_to_midi(NOTES, tmp_path / "bad.mid", key_shift=80)


def test_pianoroll_png(tmp_path):
    path = pianoroll_png(NOTES, tmp_path / "roll.png", n_voices=4, seed_measures=1, title="seed + 1 generated")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    pianoroll_png(np.zeros((0, 4), dtype=int), tmp_path / "empty.png", n_voices=4)  # empty piece still draws
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_midi_to_wav(tmp_path):
    midi = notes_to_midi(NOTES, tmp_path / "piece.mid", tempo=120.0)
    synthesiser = midi_to_wav(tmp_path / "piece.mid", tmp_path / "piece.wav", sample_rate=8000)
    assert synthesiser in {"fluidsynth", "sine"}
    rate, audio = wavfile.read(tmp_path / "piece.wav")
    assert rate == 8000 and audio.dtype == np.int16 and np.abs(audio).max() > 0
    assert abs(len(audio) / rate - midi.get_end_time()) < 1.0
