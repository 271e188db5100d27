"""The data pipeline against independent truth: hand-written MIDI, music21's own reports."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest

from rmvae.config import DataConfig
from rmvae.data.corpus import NoUsableFilesError, load_corpus
from rmvae.data.datamodule import ChoraleDataModule
from rmvae.data.notes import PitchRange, notes_to_tokens, tokens_to_notes, notes_to_poly, poly_to_notes
from rmvae.data.midi import (DrumsOnlyError, EmptyScoreError, NotFourFourError, NotMidiError, VoiceCountError,
                             read_midi, read_music21)


def write_midi(path, voices, tempo=120.0, time_signature=(4, 4), drums=False, key_number=None):
    """voices: list of lists of (start_step, duration_steps, pitch) at `tempo` bpm."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    if key_number is not None:
        midi.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    step = 60.0 / tempo / 4
    for notes in voices:
        instrument = pretty_midi.Instrument(program=52, is_drum=drums)
        for start, duration, pitch in notes:
            instrument.notes.append(pretty_midi.Note(90, pitch, start * step, (start + duration) * step))
        midi.instruments.append(instrument)
    midi.write(str(path))
    return path


# Two voices, two measures: a note held across the bar line (12 → 20), rests, a repeated pitch.
SOPRANO = [(0, 4, 72), (4, 4, 72), (12, 8, 74), (24, 2, 76), (26, 2, 77)]  # rest 8–12, 20–24, 28–32
BASS = [(0, 16, 48), (16, 4, 43), (22, 10, 45)]  # rest 20–22


def test_midi_round_trip_note_for_note(tmp_path):
    path = write_midi(tmp_path / "hand.mid", [SOPRANO, BASS])
    score = read_midi(path, n_voices=2)
    expected = sorted([(0, *n) for n in SOPRANO] + [(1, *n) for n in BASS])
    assert sorted(map(tuple, score.notes.tolist())) == expected
    assert score.n_measures == 2
    pitch_range = PitchRange(40, 80)
    tokens, folded = notes_to_tokens(score.notes, 2, 2, pitch_range)
    assert folded == 0
    # Held across the bar line: the soprano's first step of measure 2 is a hold.
    assert tokens[1, 0, 0] == pitch_range.hold and tokens[0, 0, 12] == 74 - 40
    assert tokens[0, 0, 8] == pitch_range.rest and tokens[0, 0, 4] == 72 - 40  # re-struck, not held
    assert sorted(map(tuple, tokens_to_notes(tokens, pitch_range).tolist())) == expected
    poly, _ = notes_to_poly(score.notes, 2, 2, pitch_range)
    assert sorted(map(tuple, poly_to_notes(poly, pitch_range).tolist())) == expected


def test_pickup_is_padded_for_midi(tmp_path):
    path = write_midi(tmp_path / "pickup.mid", [[(0, 4, 72), (4, 16, 74)]])
    score = read_midi(path, n_voices=1, pickup_beats=1)
    assert score.notes[:, 1].tolist() == [12, 16]  # the one-beat pickup ends on the bar line


def test_known_chorale_matches_music21():
    import music21

    source = music21.corpus.parse("bach/bwv108.6")
    score = read_music21(source, n_voices=4)
    parts = list(source.parts)
    assert [p.partName for p in parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    # music21 splits a measure at some repeat signs (two objects with one number): count numbers.
    assert score.n_measures == len({m.number for m in parts[0].getElementsByClass("Measure")}) == 14
    for voice, part in enumerate(parts):
        pitches = [p.midi for p in part.pitches]
        ours = score.notes[score.notes[:, 0] == voice, 3]
        assert (ours.min(), ours.max()) == (min(pitches), max(pitches))
    # The pickup (one quarter) is padded with three quarters of rest.
    assert score.pickup_steps == 12 and score.notes[:, 1].min() == 12


def test_transposition_d_major_to_c_keeps_intervals(tmp_path):
    d_major = [(0, 4, 62), (4, 4, 66), (8, 4, 69), (12, 4, 74)]
    bass = [(0, 16, 50)]
    path = write_midi(tmp_path / "d.mid", [d_major, bass], key_number=2)  # 2 = D major
    raw = read_midi(path, n_voices=2)
    moved = read_midi(path, n_voices=2, transpose=True)
    assert moved.key_shift == -2
    assert moved.notes[moved.notes[:, 0] == 0, 3].tolist() == [60, 64, 67, 72]  # C E G C
    assert np.array_equal(np.diff(moved.notes[:, 3]), np.diff(raw.notes[:, 3]))
    restored = moved.notes[:, 3] - moved.key_shift
    assert np.array_equal(restored, raw.notes[:, 3])


def test_transposition_without_key_signature_uses_analysis(tmp_path):
    d_major_scale = [(4 * i, 4, p) for i, p in enumerate([62, 64, 66, 67, 69, 71, 73, 74, 69, 66, 62])]
    path = write_midi(tmp_path / "d_noks.mid", [d_major_scale])
    moved = read_midi(path, n_voices=1, transpose=True)
    assert moved.key_shift == -2


def test_out_of_range_notes_are_folded_and_counted():
    notes = np.array([[0, 0, 4, 96], [0, 4, 4, 30]])
    tokens, folded = notes_to_tokens(notes, 1, 1, PitchRange(48, 72))
    assert folded == 2
    assert tokens_to_notes(tokens, PitchRange(48, 72))[:, 3].tolist() == [72, 54]  # C7 → C5, F#1 → F#3


@pytest.fixture
def bad_folder(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = [(0, 16, 72)], [(0, 16, 67)], [(0, 16, 60)], [(0, 16, 48)]
    write_midi(folder / "good.mid", list(good))
    (folder / "notes.txt").write_text("not music")
    (folder / "garbage.mid").write_bytes(b"this is not a midi file")
    (folder / "empty.mid").write_bytes(b"")
    truncated = (folder / "good.mid").read_bytes()[:30]
    (folder / "truncated.mid").write_bytes(truncated)
    write_midi(folder / "drums.mid", [[(0, 4, 36)]], drums=True)
    write_midi(folder / "silent.mid", [[], []])
    write_midi(folder / "two_voices.mid", [[(0, 16, 72)], [(0, 16, 48)]])
    write_midi(folder / "waltz.mid", list(good), time_signature=(3, 4))
    return folder


def test_bad_files_are_skipped_and_listed(bad_folder, tmp_path):
    corpus = load_corpus(DataConfig(source=str(bad_folder)), cache_dir=tmp_path / "cache", workers=1)
    assert [s.name for s in corpus.scores] == ["good"]
    reasons = {row["file"]: row["reason"] for row in corpus.skipped}
    assert set(reasons) == {"notes.txt", "garbage.mid", "empty.mid", "truncated.mid", "drums.mid",
                            "silent.mid", "two_voices.mid", "waltz.mid"}
    assert "not a score file" in reasons["notes.txt"]
    for name in ("garbage.mid", "empty.mid", "truncated.mid"):
        assert reasons[name].startswith("not a readable MIDI file"), reasons[name]
    assert "drum" in reasons["drums.mid"]
    assert reasons["silent.mid"] == "no notes"
    assert reasons["two_voices.mid"] == "2 voice(s) with notes, 4 asked"
    assert "3/4" in reasons["waltz.mid"]


def test_each_bad_file_raises_its_typed_error(bad_folder):
    expected = {"garbage.mid": NotMidiError, "empty.mid": NotMidiError, "truncated.mid": NotMidiError,
                "drums.mid": DrumsOnlyError, "silent.mid": EmptyScoreError, "two_voices.mid": VoiceCountError,
                "waltz.mid": NotFourFourError}
    for name, error in expected.items():
        with pytest.raises(error):
            read_midi(bad_folder / name, n_voices=4)


def test_folder_without_usable_file_is_one_clear_error(tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    (folder / "broken.mid").write_bytes(b"xx")
    with pytest.raises(NoUsableFilesError, match="nothing"):
        load_corpus(DataConfig(source=str(folder)), cache_dir=tmp_path / "cache")


def test_cache_reloads_without_parsing_and_rebuilds_on_config_change(chorale_folder, tmp_path):
    config = DataConfig(source=str(chorale_folder))
    first = load_corpus(config, cache_dir=tmp_path, workers=1)
    assert first.parsed_files == len(list(chorale_folder.glob("*.mid")))
    second = load_corpus(config, cache_dir=tmp_path)
    assert second.parsed_files == 0
    assert [s.name for s in second.scores] == [s.name for s in first.scores]
    for a, b in zip(first.scores, second.scores):
        assert np.array_equal(a.notes, b.notes) and a.key_shift == b.key_shift
    changed = load_corpus(DataConfig(source=str(chorale_folder), transpose=False), cache_dir=tmp_path, workers=1)
    assert changed.parsed_files > 0
    # Window-only settings do not invalidate the parse cache.
    assert load_corpus(DataConfig(source=str(chorale_folder), n_measures=4), cache_dir=tmp_path).parsed_files == 0


def test_split_by_piece_and_windows_stay_inside_pieces(chorale_folder, cache_dir):
    config = DataConfig(source=str(chorale_folder), split=(0.5, 0.25, 0.25), n_measures=4, batch_size=8)
    datamodule = ChoraleDataModule(config, cache_dir=cache_dir)
    datamodule.setup()
    splits = datamodule.split_indices
    names = {split: {datamodule.corpus.scores[i].name for i in splits[split]} for split in splits}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    assert sum(len(v) for v in names.values()) == len(datamodule.corpus.scores)
    for split, dataset in datamodule.datasets.items():
        for index in range(len(dataset)):
            item = dataset[index]
            piece = dataset.pieces[int(item["piece"])]
            target = int(item["target_index"])
            assert np.array_equal(item["target"].numpy(), piece.tokens[target])
            mask = item["input_mask"].numpy()[:, 0]
            real = item["inputs"].numpy()[mask]
            first = target - config.offset - config.n_measures + 1
            assert np.array_equal(real, piece.tokens[max(0, first):target - config.offset + 1])
            assert (item["inputs"].numpy()[~mask] == datamodule.pitch_range.rest).all()


def test_offset_two_window_skips_one_measure(chorale_folder, cache_dir):
    config = DataConfig(source=str(chorale_folder), n_measures=3, offset=2)
    datamodule = ChoraleDataModule(config, cache_dir=cache_dir)
    datamodule.setup()
    dataset = datamodule.datasets["train"]
    item = dataset[5]
    piece = dataset.pieces[int(item["piece"])]
    target = int(item["target_index"])
    assert np.array_equal(item["inputs"][-1].numpy(), piece.tokens[target - 2])


def test_data_cli_json(chorale_folder, tmp_path):
    result = subprocess.run([sys.executable, "-m", "rmvae.cli", "data", "--source", str(chorale_folder),
                             "--cache-dir", str(tmp_path), "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout)
    for key in ("pieces_used", "pieces_skipped", "skipped", "measures", "windows", "pitch_range"):
        assert key in summary
    assert summary["pieces_used"] == len(list(chorale_folder.glob("*.mid")))
    assert set(summary["windows"]) == {"train", "val", "test"}
    low, high = summary["pitch_range"]
    assert 30 <= low < high <= 90


def test_data_cli_unknown_folder_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rmvae.cli", "data", "--source", str(tmp_path / "nope"),
                             "--cache-dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "nope" in result.stderr


@pytest.mark.parametrize("encoding", ["mono", "poly"])
@pytest.mark.parametrize("offset", [1, 2])
def test_inputs_carry_nothing_after_the_last_input_bar_line(chorale_folder, cache_dir, encoding, offset):
    """Rewrite everything after a window's last input measure (every note held on, or silence):
    the window's inputs must not change. Before durations were clipped, a poly input note still
    sounding at the bar line told the model how long it is held into the target."""
    from rmvae.data.datamodule import EncodedPiece, WindowDataset, onset_durations

    config = DataConfig(source=str(chorale_folder), n_measures=4, offset=offset, encoding=encoding)
    datamodule = ChoraleDataModule(config, cache_dir=cache_dir)
    datamodule.setup()
    pitch_range = datamodule.pitch_range
    pieces = datamodule.pieces["train"] + datamodule.pieces["val"] + datamodule.pieces["test"]
    dataset = WindowDataset(pieces, config.n_measures, offset, pitch_range, encoding)
    checked = 0
    for index, (piece_index, target) in enumerate(dataset.windows):
        last_input = target - offset
        original = dataset[index]["inputs"].numpy()
        for filler in (pitch_range.hold, pitch_range.rest):
            tokens = pieces[piece_index].tokens.copy()
            tokens[last_input + 1:] = filler
            changed = list(pieces)
            changed[piece_index] = EncodedPiece("changed", tokens, onset_durations(tokens, pitch_range), 0)
            rewritten = WindowDataset(changed, config.n_measures, offset, pitch_range, encoding)[index]
            assert np.array_equal(rewritten["inputs"].numpy(), original), (encoding, offset, index, filler)
        checked += 1
    assert checked == len(dataset) > 50


def test_poly_input_duration_stops_at_the_bar_line(chorale_folder, cache_dir):
    """A whole note tied over the window's end reads as lasting to the bar line, not beyond."""
    from rmvae.encodings.poly import clip_at_window_end

    durations = np.zeros((2, 1, 16), dtype=np.int16)
    durations[1, 0, 4] = 40  # onset at step 4 of the last measure, held 40 steps in the piece
    durations[0, 0, 0] = 8  # inside the window: unchanged
    clipped = clip_at_window_end(durations)
    assert clipped[1, 0, 4] == 12 and clipped[0, 0, 0] == 8
