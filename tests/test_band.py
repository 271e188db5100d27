"""Band player (docs/design.md §6): quantisation, the expert cache, the clock that never waits, bad inputs."""
from __future__ import annotations

import json
import time

import lightning
import mido
import numpy as np
import pretty_midi
import pytest
import torch

from rmvae.band import (BandEngine, CachedPredictor, FilePlayer, LivePlayer, NaivePredictor, RealClock,
                        SimulatedClock, measure_seconds, measure_tokens, quantise, step_seconds)
from rmvae.cli import main
from rmvae.config import STEPS_PER_MEASURE, Config, DataConfig, LossConfig, ModelConfig, TrainConfig
from rmvae.data.notes import PitchRange
from rmvae.data.midi import read_midi
from rmvae.model.rmvae import RMVAE
from rmvae.module import RMVAEModule

RANGE = PitchRange(48, 81)
OFFSET_MESSAGE = ("this checkpoint was trained with offset 1; the band player needs a model trained with "
                  "--offset 2 so each prediction has a whole measure to complete")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def band_checkpoint(chorale_folder, cache_dir, tmp_path_factory):
    """A tiny model trained for a few steps with offset 2 (the band's setting) and, as
    `rmvae train --offset 2` sets it, the default writer in the context the band caches (measure)."""
    from rmvae.train import train

    config = Config(data=DataConfig(source=str(chorale_folder), split=(0.6, 0.2, 0.2), batch_size=16,
                                    n_measures=4, offset=2),
                    model=ModelConfig(size="small", width_scale=0.25, z_dim=8, writer_context="measure"),
                    loss=LossConfig(n_subsets=1),
                    train=TrainConfig(max_steps=4, wandb=False, limit_val_batches=1))
    return train(config, tmp_path_factory.mktemp("band_run"), progress_bar=False, cache_dir=cache_dir)["best_checkpoint"]


@pytest.fixture(scope="module")
def offset1_checkpoint(tmp_path_factory):
    """An untrained offset-1 checkpoint in Lightning's format (only its config matters)."""
    config = Config(data=DataConfig(n_measures=4, offset=1), model=ModelConfig(size="small", width_scale=0.25, z_dim=8))
    module = RMVAEModule(config.to_dict(), {"encoding": "mono", "low": 36, "high": 81, "n_voices": 4})
    path = tmp_path_factory.mktemp("offset1") / "offset1.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    return path


def tiny_model(seed: int = 0, decoder: str = "factorised", offset: int = 2) -> RMVAE:
    torch.manual_seed(seed)
    config = ModelConfig(size="small", width_scale=0.25, z_dim=8, measure_decoder=decoder, writer_context="measure")
    return RMVAE(config, 4, RANGE.n_pitches, "mono", target_offset=offset).eval()


def step_notes(instrument, tempo: float) -> set[tuple[int, int, int]]:
    """(start, duration, pitch) in sixteenth steps of a pretty_midi instrument written at ``tempo``."""
    step = step_seconds(tempo)
    return {(round(n.start / step), round((n.end - n.start) / step), n.pitch) for n in instrument.notes}


class StubPredictor:
    """Returns measure ``k`` of a fixed pattern per prediction; predictions from ``slow_from`` on sleep ``delay`` s."""

    def __init__(self, delay: float = 0.0, slow_from: int = 0):
        self.delay, self.slow_from = delay, slow_from
        self.pushed: list[tuple[np.ndarray, np.ndarray]] = []
        self.calls = 0

    def push(self, tokens, mask):
        self.pushed.append((tokens.copy(), mask.copy()))

    def predict(self):
        call, self.calls = self.calls, self.calls + 1
        if call >= self.slow_from:
            time.sleep(self.delay)
        tokens = np.full((4, STEPS_PER_MEASURE), RANGE.hold)
        tokens[:, 0] = [10 + call, 5 + call, 3 + call, call]  # one whole-measure note per voice, new pitch each call
        return tokens


def file_player(n_measures: int, voice: int = 0) -> FilePlayer:
    """One half note after another, two per measure."""
    notes = [(voice, 8 * i, 8, 60 + i % 5) for i in range(2 * n_measures)]
    return FilePlayer(np.array(notes), voice)


# --- quantisation and the player's tokens ---------------------------------------------------------


@pytest.mark.parametrize("tempo", [120.0, 90.0])
def test_quantise_nearest_step(tempo):
    step = step_seconds(tempo)
    assert quantise(0.49 * step, tempo) == 0
    assert quantise(0.51 * step, tempo) == 1
    for intended in (0, 1, 7, 16, 63):
        for error in (-0.012, -0.004, 0.004, 0.012):  # a few ms early or late
            assert quantise(intended * step + error, tempo) == max(0, intended)
    assert quantise(-0.01, tempo) == 0  # just before the song start


@pytest.mark.parametrize("tempo", [120.0, 90.0])
def test_live_notes_land_on_the_grid(tempo):
    clock = SimulatedClock()
    player = LivePlayer(voice=0, tempo=tempo)
    player.begin(clock, song_start=1.0)
    step = step_seconds(tempo)

    def at(steps: float, message):
        clock.time = 1.0 + steps * step
        player.handle(message)

    at(4 - 0.2, mido.Message("note_on", note=60, velocity=80))  # slightly early
    at(8 + 0.3, mido.Message("note_off", note=60))  # slightly late
    at(8.1, mido.Message("note_on", note=62, velocity=80))
    at(8.3, mido.Message("note_on", note=62, velocity=0))  # a tenth of a sixteenth: still one step
    at(12, mido.Message("note_on", note=64, velocity=80))  # still held when asked
    at(12.5, mido.Message("control_change", control=64, value=127))  # ignored
    notes = player.notes_until(16)
    assert notes.tolist() == [[0, 4, 4, 60], [0, 8, 1, 62], [0, 12, 4, 64]]


def test_measure_tokens_tie_chord_and_fold():
    # A note tied over the bar line, a chord (highest kept), a pitch above the range (folded).
    notes = np.array([[0, 12, 8, 60], [0, 24, 4, 64], [0, 24, 4, 67], [0, 28, 4, 96]])
    tokens = measure_tokens(notes, 1, 4, RANGE)
    hold, rest = RANGE.hold, RANGE.rest
    # 96 is above 81: folded down two octaves to 72.
    expected = [hold] * 4 + [rest] * 4 + [67 - RANGE.low] + [hold] * 3 + [72 - RANGE.low] + [hold] * 3
    assert tokens[0].tolist() == expected
    assert (tokens[1:] == RANGE.rest).all()
    bass_chord = np.array([[3, 0, 4, 50], [3, 0, 4, 55]])
    assert measure_tokens(bass_chord, 0, 4, RANGE)[3, 0] == 50 - 48  # the bass keeps its lowest note


# --- the expert cache ----------------------------------------------------------------------------


@pytest.mark.parametrize("decoder, offset", [("factorised", 2), ("autoregressive", 2), ("autoregressive", 1)])
def test_cached_predictor_equals_re_encoding(decoder, offset):
    model = tiny_model(decoder=decoder, offset=offset)
    cached = CachedPredictor(model, 4, [1, 2, 3], offset=offset)
    naive = NaivePredictor(model, 4, [1, 2, 3], offset=offset)
    rng = np.random.default_rng(0)
    for measure in range(7):  # fewer than, equal to and more than the window
        tokens = rng.integers(0, RANGE.n_classes, size=(4, STEPS_PER_MEASURE))
        mask = np.array([True, measure >= 2, measure >= 2, measure >= 3])
        cached.push(tokens, mask)
        naive.push(tokens, mask)
        (mu_c, logvar_c, _), (mu_n, logvar_n, _) = cached.latent(), naive.latent()
        assert torch.allclose(mu_c, mu_n, atol=1e-5) and torch.allclose(logvar_c, logvar_n, atol=1e-5)
        assert np.array_equal(cached.predict(), naive.predict())
    assert (cached.predict()[0] == RANGE.rest).all()  # the player's voice is not played


def test_band_writer_hears_the_last_measure_only_when_it_predicts_the_next():
    """A measure writer reads the measure before the predicted one: the last pushed one for a model
    of the next measure, unknown for the band's measure after next."""
    tokens = np.full((4, STEPS_PER_MEASURE), RANGE.hold)
    tokens[:, 0] = 3
    mask = np.array([True, True, False, True])
    for offset in (1, 2):
        predictor = CachedPredictor(tiny_model(decoder="autoregressive", offset=offset), 4, [1, 2, 3], offset=offset)
        predictor.push(tokens, mask)
        previous = predictor._previous()
        if offset == 2:
            assert previous is None
        else:
            expected = torch.as_tensor(tokens).clone()
            expected[2] = predictor.model.writer.unknown  # a hidden voice is unknown
            assert torch.equal(previous.previous[0], expected)


def test_encoding_ahead_changes_nothing_but_the_work_at_the_bar_line():
    model = tiny_model()
    ahead, plain = CachedPredictor(model, 4, [1, 2, 3]), CachedPredictor(model, 4, [1, 2, 3])
    rng = np.random.default_rng(1)
    mask = np.ones(4, dtype=bool)
    for measure in range(6):
        tokens = rng.integers(0, RANGE.n_classes, size=(4, STEPS_PER_MEASURE))
        band_part = tokens.copy()
        if measure == 3:
            band_part[2, 5] = (band_part[2, 5] + 1) % RANGE.n_classes  # changed after: encoded again at the push
        ahead.encode_ahead(band_part, [1, 2, 3])
        encoded = ahead.n_encoded
        ahead.push(tokens, mask)
        plain.push(tokens, mask)
        assert ahead.n_encoded - encoded == (2 if measure == 3 else 1)  # the player (and the changed voice)
        assert torch.allclose(ahead.latent()[0], plain.latent()[0], atol=1e-6)


# --- the engine ----------------------------------------------------------------------------------


def test_engine_plays_predictions_from_measure_offset():
    predictor = StubPredictor()
    engine = BandEngine(predictor, SimulatedClock(), file_player(6), 4, 0, (1, 2, 3), RANGE, tempo=120, n_measures=6)
    report = engine.run()
    assert report.band == ["silent", "silent", "predicted", "predicted", "predicted", "predicted"]
    assert (report.measures, report.predictions, report.late) == (6, 4, 0)
    # Measure m's prediction was asked at bar line m − 1, from measures up to m − 2.
    assert len(predictor.pushed) == 4
    first_tokens, first_mask = predictor.pushed[0]
    assert first_mask.tolist() == [True, False, False, False]  # the band was silent in measure 0
    assert first_tokens[0, 0] == 60 - RANGE.low and first_tokens[0, 8] == 61 - RANGE.low
    assert predictor.pushed[-1][1].tolist() == [True, True, True, True]
    assert (predictor.pushed[1][0][1:, 0] == RANGE.rest).all()  # the band's silent measure 1, fed back
    assert predictor.pushed[2][0][1, 0] == 5  # the band's own measure 2 (first prediction), fed back
    band = engine.played_notes()
    assert {tuple(n) for n in band[band[:, 0] == 1]} == {(1, 16 * m, 16, RANGE.low + 5 + m - 2) for m in range(2, 6)}


def test_slow_predictor_is_late_and_the_band_holds():
    tempo = 2400.0  # a 100 ms measure
    clock = SimulatedClock()
    predictor = StubPredictor(delay=1.6 * measure_seconds(tempo), slow_from=2)
    engine = BandEngine(predictor, clock, file_player(8), 4, 0, (1, 2, 3), RANGE, tempo=tempo, n_measures=8)
    report = engine.run()
    assert report.measures == 8  # the clock kept time
    assert clock.now() == pytest.approx(8 * measure_seconds(tempo))
    assert report.band == ["silent"] * 2 + ["predicted"] * 2 + ["held"] * 4
    assert report.late == 4 and report.predictions == 6
    for measure in range(4, 8):  # the band repeats its last measure
        assert np.array_equal(engine.band_tokens[measure][1:], engine.band_tokens[3][1:])
    assert max(report.latencies) > measure_seconds(tempo)
    assert report.summary()["late"] == 4


def test_always_late_band_stays_silent():
    tempo = 2400.0
    predictor = StubPredictor(delay=1.2 * measure_seconds(tempo))
    report = BandEngine(predictor, SimulatedClock(), file_player(5), 4, 0, (1, 2, 3), RANGE, tempo=tempo,
                        n_measures=5).run()
    assert report.band == ["silent"] * 5 and report.late == 3 and report.measures == 5


def test_real_clock_never_waits_for_the_model():
    tempo = 960.0  # a 250 ms measure
    predictor = StubPredictor(delay=0.6)  # every prediction takes 2.4 measures
    bar_lines: list[float] = []
    clock = RealClock()
    engine = BandEngine(predictor, clock, file_player(4), 4, 0, (1, 2, 3), RANGE, tempo=tempo, n_measures=4,
                        on_measure=lambda measure, status: bar_lines.append(clock.now()))
    report = engine.run()
    assert report.measures == 4 and report.late == 2 and report.band == ["silent"] * 4
    nominal = np.arange(4) * measure_seconds(tempo)
    assert np.all(np.array(bar_lines) - bar_lines[0] - nominal < 0.2)  # no bar line waited 0.6 s


def test_engine_encodes_only_the_player_at_the_bar_line():
    class Counting(CachedPredictor):
        def push(self, tokens, mask):
            before = self.n_encoded
            super().push(tokens, mask)
            self.per_push.append(self.n_encoded - before)

    predictor = Counting(tiny_model(), 4, [1, 2, 3])
    predictor.per_push = []
    report = BandEngine(predictor, SimulatedClock(), file_player(7), 4, 0, (1, 2, 3), RANGE, tempo=120,
                        n_measures=7).run()
    assert report.band == ["silent"] * 2 + ["predicted"] * 5 and report.late == 0
    assert predictor.per_push == [1] * 5  # measures 0–4; the band's part of 2–4 was encoded ahead


def test_live_player_through_the_engine():
    clock = SimulatedClock()
    player = LivePlayer(voice=1, tempo=120.0)
    pressed: list[int] = []

    def keyboard(measure: int, status: str) -> None:  # a whole note per measure, pressed at the bar line
        if pressed:
            player.handle(mido.Message("note_off", note=pressed[-1]))
        pressed.append(55 + measure)
        player.handle(mido.Message("note_on", note=pressed[-1], velocity=70))

    predictor = StubPredictor()
    engine = BandEngine(predictor, clock, player, 4, 1, (0, 2, 3), RANGE, tempo=120.0, n_measures=4,
                        on_measure=keyboard)
    report = engine.run()
    assert report.measures == 4 and report.band == ["silent", "silent", "predicted", "predicted"]
    assert [tokens[1, 0] for tokens, _ in predictor.pushed] == [55 - RANGE.low, 56 - RANGE.low]
    played = engine.played_notes()
    assert played[played[:, 0] == 1].tolist() == [[1, 16 * m, 16, 55 + m] for m in range(4)]


def test_count_in_clicks_before_the_first_downbeat():
    class Clicks:
        def __init__(self, clock):
            self.clock, self.times = clock, []

        def note_on(self, voice, pitch):
            pass

        note_off = note_on

        def click(self, downbeat):
            self.times.append((self.clock.now(), downbeat))

        def close(self):
            pass

    clock = SimulatedClock()
    output = Clicks(clock)
    tempo = 120.0  # half a second a beat
    BandEngine(StubPredictor(), clock, file_player(1), 4, 0, (1, 2, 3), RANGE, tempo=tempo, n_measures=1,
               output=output, metronome=True, count_in=1).run()
    assert output.times == [(0.0, True), (0.5, False), (1.0, False), (1.5, False),  # count-in
                            (2.0, True), (2.5, False), (3.0, False), (3.5, False)]  # measure 1


def test_engine_schedules_by_the_predictors_offset():
    """The checkpoint's offset (rmvae band passes data.offset to the predictor) is the one the
    engine schedules by, and it is checked there."""
    engine = BandEngine(CachedPredictor(tiny_model(), 4, [1, 2, 3], offset=3), SimulatedClock(), file_player(2), 4, 0,
                        (1, 2, 3), RANGE, tempo=120)
    assert engine.offset == 3
    assert BandEngine(StubPredictor(), SimulatedClock(), file_player(2), 4, 0, (1, 2, 3), RANGE, tempo=120).offset == 2
    with pytest.raises(ValueError, match="offset"):
        BandEngine(CachedPredictor(tiny_model(), 4, [1, 2, 3], offset=1), SimulatedClock(), file_player(2), 4, 0,
                   (1, 2, 3), RANGE, tempo=120)


def test_engine_refuses_offset_1():
    with pytest.raises(ValueError, match="offset"):
        BandEngine(StubPredictor(), SimulatedClock(), file_player(2), 4, 0, (1, 2, 3), RANGE, tempo=120, offset=1)


# --- the command, headless on a real chorale -------------------------------------------------------


def test_headless_chorale(band_checkpoint, chorale_folder, tmp_path, capsys):
    source = sorted(chorale_folder.glob("*.mid"))[0]
    out = tmp_path / "band.mid"
    tempo = 40.0  # a 6 s simulated measure: the tiny model is never late
    code = main(["band", str(band_checkpoint), "--player-file", str(source), "--voice", "0",
                 "--band-voices", "1", "2", "3", "--tempo", str(tempo), "--headless", "--record", str(out),
                 "--temperature", "1", "--seed", "0"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    original = read_midi(source, n_voices=4)
    n_measures = original.n_measures
    assert summary["measures"] == n_measures
    assert summary["predictions"] == n_measures - 2 and summary["late"] == 0
    assert summary["latency_ms"]["p95"] is not None

    recorded = pretty_midi.PrettyMIDI(str(out))
    by_name = {instrument.name: instrument for instrument in recorded.instruments}
    soprano = {tuple(n) for n in original.notes[original.notes[:, 0] == 0][:, 1:].tolist()}
    assert step_notes(by_name["soprano"], tempo) == soprano  # the player's part, note for note, in its key
    # The band joins at measure 2 (the first prediction is asked when measure 0 ends) and, when on
    # time, plays every measure from there to the end.
    for name in ("alto", "tenor", "bass"):
        notes = step_notes(by_name[name], tempo)
        assert min(start for start, _, _ in notes) >= 2 * STEPS_PER_MEASURE
        sounding = {m for start, duration, _ in notes
                    for m in range(start // STEPS_PER_MEASURE, (start + duration - 1) // STEPS_PER_MEASURE + 1)}
        assert sounding == set(range(2, n_measures)), name


# --- bad inputs ----------------------------------------------------------------------------------


def run_band(capsys, *args) -> str:
    code = main(["band", *map(str, args)])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("rmvae band: error: ") and "Traceback" not in error
    return error


def test_offset_1_checkpoint_is_refused(offset1_checkpoint, chorale_folder, capsys):
    source = sorted(chorale_folder.glob("*.mid"))[0]
    error = run_band(capsys, offset1_checkpoint, "--player-file", source, "--headless")
    assert error.endswith(OFFSET_MESSAGE)


def test_missing_checkpoint(tmp_path, chorale_folder, capsys):
    source = sorted(chorale_folder.glob("*.mid"))[0]
    assert "does not exist" in run_band(capsys, tmp_path / "nope.ckpt", "--player-file", source, "--headless")


def test_voice_out_of_range(band_checkpoint, chorale_folder, capsys):
    source = sorted(chorale_folder.glob("*.mid"))[0]
    error = run_band(capsys, band_checkpoint, "--player-file", source, "--voice", "4", "--headless")
    assert "--voice 4 is out of range" in error and "4 voices" in error


def test_player_file_without_notes(band_checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.mid"
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(program=0))
    midi.write(str(empty))
    assert "has no notes" in run_band(capsys, band_checkpoint, "--player-file", empty, "--headless")


def test_no_midi_system(band_checkpoint, monkeypatch, capsys):
    import rtmidi

    def broken():
        raise rtmidi.SystemError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "get_input_names", broken)
    error = run_band(capsys, band_checkpoint, "--input-port", "--measures", 1)
    assert "cannot open the MIDI system" in error and "--player-file FILE --headless" in error


def test_no_midi_ports_and_unknown_port(band_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(mido, "get_input_names", lambda: [])
    error = run_band(capsys, band_checkpoint, "--input-port", "--measures", 1)
    assert "no MIDI input ports" in error and "--headless" in error
    monkeypatch.setattr(mido, "get_input_names", lambda: ["Keyboard A 20:0", "Keyboard B 24:0"])
    error = run_band(capsys, band_checkpoint, "--input-port", "Piano", "--measures", 1)
    assert "no MIDI input port named 'Piano'" in error and "'Keyboard A 20:0'" in error
