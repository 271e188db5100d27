"""`rmvae generate`: written MIDI files read back right, runs are reproducible, bad input is one line.

Most calls run in-process through ``rmvae.cli.main`` (a subprocess costs seconds of imports);
a few real subprocesses check that no traceback reaches the user.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
import torch

from rmvae.cli import main
from rmvae.data.notes import PITCH, START
from rmvae.data.midi import read_midi
from test_tasks import trained_checkpoint  # noqa: E402  (the shared tiny model)

SEED_STEPS = 6 * 16


@pytest.fixture(scope="module")
def checkpoint(chorale_folder, cache_dir, tmp_path_factory) -> str:
    return str(trained_checkpoint(chorale_folder, cache_dir, tmp_path_factory))


@pytest.fixture(scope="module")
def chorale_midi(chorale_folder):
    """A held-out chorale (G minor: read shifted by +2 to A minor), 22 measures, 4 voices."""
    return str(chorale_folder / "bwv10.7.mid")


def generate(capsys, checkpoint, *args) -> tuple[int, str, str]:
    code = main(["generate", checkpoint, *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_complete_writes_a_midi_with_voices_measures_tempo_and_key(capsys, checkpoint, chorale_midi, tmp_path):
    out = tmp_path / "out.mid"
    code, stdout, err = generate(capsys, checkpoint, "--task", "complete", "--input", chorale_midi,
                                 "--seed-measures", 6, "--measures", 3, "--tempo", 90, "--out", out)
    assert code == 0, err
    assert "complete: 9 measures, 12 voice-measures generated" in stdout
    assert out.with_suffix(".png").stat().st_size > 0
    midi = pretty_midi.PrettyMIDI(str(out))
    assert [i.name for i in midi.instruments] == ["soprano", "alto", "tenor", "bass"]
    score = read_midi(out, n_voices=4)
    assert score.n_measures == 6 + 3
    assert score.tempo == pytest.approx(90, abs=1e-3)
    # The input is read transposed to A minor (+2): rendering must undo it. The seed measures'
    # onsets come back at the same times with the same pitch classes (pitches may be octave-folded
    # into the model's range, pitch classes not).
    source = read_midi(chorale_midi, n_voices=4)
    assert read_midi(chorale_midi, n_voices=4, transpose=True).key_shift == 2

    def seed_onsets(notes):
        notes = notes[notes[:, START] < SEED_STEPS]
        return sorted(zip(notes[:, START].tolist(), (notes[:, PITCH] % 12).tolist()))

    assert seed_onsets(score.notes) == seed_onsets(source.notes)


def test_harmonized_melody_comes_back_note_for_note(capsys, checkpoint, tmp_path):
    melody_file, out = tmp_path / "melody.mid", tmp_path / "harmonized.mid"
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)  # a quarter note = 0.5 s
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0))
    midi.key_signature_changes.append(pretty_midi.KeySignature(7, 0))  # G major: read shifted by +5
    melody = [(0, 4, 67), (4, 4, 69), (8, 4, 71), (12, 4, 67), (16, 8, 74), (24, 8, 71), (32, 2, 72), (34, 2, 71),
              (36, 4, 69), (40, 8, 62), (48, 4, 66), (52, 4, 69), (56, 8, 67)]  # (start, length) in sixteenths
    instrument = pretty_midi.Instrument(0, name="melody")
    instrument.notes = [pretty_midi.Note(90, pitch, start / 8, (start + length) / 8) for start, length, pitch in melody]
    midi.instruments.append(instrument)
    midi.write(str(melody_file))

    code, stdout, err = generate(capsys, checkpoint, "--task", "harmonize", "--input", melody_file,
                                 "--temperature", 1, "--seed", 0, "--out", out)
    assert code == 0, err
    assert "harmonize: 4 measures, 12 voice-measures generated" in stdout
    written = pretty_midi.PrettyMIDI(str(out))
    soprano = written.instruments[0]
    assert soprano.name == "soprano" and [n.pitch for n in soprano.notes] == [p for _, _, p in melody]
    score = read_midi(out, n_voices=4)  # every voice has notes
    assert score.n_measures == 4
    voices = [sorted(map(tuple, score.notes[score.notes[:, 0] == v, 1:].tolist())) for v in range(4)]
    assert sorted(melody) in voices


def test_other_tasks_write_their_files(capsys, checkpoint, chorale_folder, chorale_midi, tmp_path):
    other = chorale_folder / "bwv101.7.mid"
    runs = {"fill": (["--voices", 2], "fill: 6 measures, 6 voice-measures generated"),
            "redo": ([], "redo: 6 measures, 24 voice-measures generated"),
            "inpaint": (["--mask", "2-3:1;5:all"], "inpaint: 6 measures, 6 voice-measures generated"),
            "interpolate": (["--input-b", other], "interpolate: 20 measures, 80 voice-measures generated")}
    for task, (extra, expected) in runs.items():
        out = tmp_path / f"{task}.mid"
        code, stdout, err = generate(capsys, checkpoint, "--task", task, "--input", chorale_midi,
                                     "--seed-measures", 6, *extra, "--out", out)
        assert code == 0, (task, err)
        assert expected in stdout
        assert out.stat().st_size > 0 and out.with_suffix(".png").stat().st_size > 0


def test_a_music21_chorale_can_seed_a_completion(capsys, checkpoint, tmp_path):
    out = tmp_path / "bwv66.mid"
    code, stdout, err = generate(capsys, checkpoint, "--task", "complete", "--chorale", "bwv66.6",
                                 "--seed-measures", 2, "--measures", 1, "--out", out)
    assert code == 0, err
    assert "complete: 3 measures, 4 voice-measures generated" in stdout
    assert len(pretty_midi.PrettyMIDI(str(out)).instruments) == 4


@pytest.mark.parametrize("kind", ["gaussian", "uniform", "binomial"])
def test_noise_writes_seed_and_new_measures(capsys, checkpoint, tmp_path, kind):
    out = tmp_path / "noise.mid"
    code, stdout, err = generate(capsys, checkpoint, "--task", "noise", "--noise", kind, "--measures", 2,
                                 "--out", out)
    assert code == 0, err
    assert "noise: 4 measures, 8 voice-measures generated" in stdout and out.exists()


def test_greedy_and_seeded_sampling_are_reproducible(capsys, checkpoint, chorale_midi, tmp_path):
    def run(name, *extra) -> bytes:
        out = tmp_path / f"{name}.mid"
        code, _, err = generate(capsys, checkpoint, "--task", "complete", "--input", chorale_midi,
                                "--seed-measures", 4, "--measures", 2, *extra, "--out", out)
        assert code == 0, err
        return out.read_bytes()

    assert run("greedy1") == run("greedy2")
    assert run("seed3a", "--temperature", 1, "--seed", 3) == run("seed3b", "--temperature", 1, "--seed", 3)
    assert run("seed3a", "--temperature", 1, "--seed", 3) != run("seed4", "--temperature", 1, "--seed", 4)


# --- bad input: one line, exit 2, no traceback --------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, chorale_folder):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "corrupt.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, folder / "foreign.ckpt")
    (folder / "garbage.mid").write_bytes(b"not a midi file at all")
    two = pretty_midi.PrettyMIDI()
    for pitch in (72, 48):
        instrument = pretty_midi.Instrument(0)
        instrument.notes = [pretty_midi.Note(90, pitch + k, 0.5 * k, 0.5 * k + 0.5) for k in range(16)]
        two.instruments.append(instrument)
    two.write(str(folder / "two_voices.mid"))
    return folder


BAD_INPUTS = {
    "missing checkpoint": ("{bad}/missing.ckpt", ["--task", "complete", "--input", "{midi}"],
                           r"checkpoint '.*missing.ckpt' does not exist; train one with `rmvae train"),
    "corrupt checkpoint": ("{bad}/corrupt.ckpt", ["--task", "complete", "--input", "{midi}"],
                           r"checkpoint '.*corrupt.ckpt' cannot be read .*is it a complete rmvae .ckpt file\?"),
    "foreign checkpoint": ("{bad}/foreign.ckpt", ["--task", "complete", "--input", "{midi}"],
                           r"'.*foreign.ckpt' is not an rmvae checkpoint"),
    "two voices for fill": ("{ckpt}", ["--task", "fill", "--voices", "1", "--input", "{bad}/two_voices.mid"],
                            r"'.*two_voices.mid' cannot be used: 2 voice\(s\) with notes, 4 asked"),
    "four voices for harmonize": ("{ckpt}", ["--task", "harmonize", "--input", "{midi}"],
                                  r"cannot be used: 4 voice\(s\) with notes, 1 asked \(harmonize takes a file "
                                  r"holding only the melody\)"),
    "unknown chorale": ("{ckpt}", ["--task", "complete", "--chorale", "bwv9999.9"],
                        r"unknown chorale id 'bwv9999.9'; ids look like bwv66.6"),
    "mask hides everything": ("{ckpt}", ["--task", "inpaint", "--mask", "all:all", "--input", "{midi}"],
                              r"the mask hides every voice of every measure"),
    "fill without voices": ("{ckpt}", ["--task", "fill", "--input", "{midi}"], r"--task fill needs --voices"),
    "bad mask": ("{ckpt}", ["--task", "inpaint", "--mask", "3-4", "--input", "{midi}"],
                 r"mask item '3-4' must be MEASURES:VOICES"),
    "voice out of range": ("{ckpt}", ["--task", "fill", "--voices", "4", "--input", "{midi}"],
                           r"voice\(s\) \[4\] out of range: this model has voices 0–3"),
    "missing input": ("{ckpt}", ["--task", "complete", "--input", "{bad}/nothing.mid"],
                      r"input file '.*nothing.mid' does not exist"),
    "not a MIDI file": ("{ckpt}", ["--task", "complete", "--input", "{bad}/garbage.mid"],
                        r"cannot be used: not a readable MIDI file"),
    "no input": ("{ckpt}", ["--task", "complete"], r"--task complete needs --input MIDI or --chorale ID"),
    "no second piece": ("{ckpt}", ["--task", "interpolate", "--input", "{midi}"],
                        r"interpolate needs a second piece: --input-b MIDI or --chorale-b ID"),
    "negative temperature": ("{ckpt}", ["--task", "complete", "--input", "{midi}", "--temperature", "-1"],
                             r"--temperature must be ≥ 0"),
    "top-k zero": ("{ckpt}", ["--task", "complete", "--input", "{midi}", "--temperature", "1", "--top-k", "0"],
                   r"--top-k must be at least 1"),
    "zero measures": ("{ckpt}", ["--task", "complete", "--input", "{midi}", "--measures", "0"],
                      r"--measures must be at least 1"),
    "zero noise measures": ("{ckpt}", ["--task", "noise", "--measures", "0"], r"noise needs at least 1 seed"),
    "wrong program count": ("{ckpt}", ["--task", "complete", "--input", "{midi}", "--program", "0", "52"],
                            r"--program needs 4 General MIDI programs"),
    "zero tempo": ("{ckpt}", ["--task", "complete", "--input", "{midi}", "--tempo", "0"], r"--tempo must be a positive number"),
    "negative seed measures": ("{ckpt}", ["--task", "complete", "--input", "{midi}", "--seed-measures", "-2"],
                               r"--seed-measures must be at least 1"),
}


def bad_command(name, bad_files, checkpoint, chorale_midi, tmp_path) -> tuple[list[str], str]:
    ckpt, args, message = BAD_INPUTS[name]
    fill = dict(bad=bad_files, ckpt=checkpoint, midi=chorale_midi)
    return ["generate", ckpt.format(**fill), *[a.format(**fill) for a in args], "--out", str(tmp_path / "x.mid")], message


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line(capsys, name, bad_files, checkpoint, chorale_midi, tmp_path):
    argv, message = bad_command(name, bad_files, checkpoint, chorale_midi, tmp_path)
    assert main(argv) == 2  # anything but a UserError would propagate here as an exception
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmvae generate: error: "), captured.err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize("name", ["corrupt checkpoint", "mask hides everything"])
def test_bad_input_in_a_real_process_has_no_traceback(name, bad_files, checkpoint, chorale_midi, tmp_path):
    argv, message = bad_command(name, bad_files, checkpoint, chorale_midi, tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "rmvae.cli", *argv], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr.strip().splitlines()[-1]), result.stderr
