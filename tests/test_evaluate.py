"""`rmvae evaluate`: a checkpoint's numbers against ones computed here from the data, and the anchors table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rmvae.cli import main
from rmvae.config import apply_overrides
from rmvae.evaluation import baseline_comparison, load_baseline, load_checkpoint, window_nlls
from rmvae.evaluation import test_datamodule as evaluation_datamodule  # not a test: renamed for pytest
from rmvae.intervals import mean_ci
from rmvae.metrics import STATISTICS
from test_tasks import task_config, trained_checkpoint  # noqa: E402  (the shared tiny model)

THESIS_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "thesis-samples"
SEED, CONTINUE = 4, 4  # both test chorales (22 and 12 measures) are long enough


@pytest.fixture(scope="module")
def checkpoint(chorale_folder, cache_dir, tmp_path_factory) -> str:
    return str(trained_checkpoint(chorale_folder, cache_dir, tmp_path_factory))


@pytest.fixture(scope="module")
def autoregressive_checkpoint(chorale_folder, cache_dir, tmp_path_factory) -> str:
    """An autoregressive baseline on the shared model's data, a few steps: its gain is checked, not its quality."""
    from rmvae.train import train

    config = apply_overrides(task_config(chorale_folder), {"model.kind": "autoregressive", "train.max_steps": 4})
    out = tmp_path_factory.mktemp("autoregressive")
    return str(train(config, out, progress_bar=False, cache_dir=cache_dir)["best_checkpoint"])


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate") / "sample.mid"


@pytest.fixture(scope="module")
def results(checkpoint, cache_dir, sample_path) -> dict:
    """``rmvae evaluate CHECKPOINT --json`` run once (in-process, stdout captured by hand)."""
    import contextlib
    import io

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setenv("RMVAE_CACHE", str(cache_dir))
        code = main(["evaluate", checkpoint, "--json", "--seed-measures", str(SEED),
                     "--continue-measures", str(CONTINUE), "--sample", str(sample_path)])
    assert code == 0
    lines = stdout.getvalue().strip().splitlines()
    assert len(lines) == 1, lines  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def held_out(checkpoint, cache_dir):
    """The checkpoint's pitch range and the token arrays of its test pieces."""
    module = load_checkpoint(checkpoint)
    pieces = evaluation_datamodule(module, cache_dir).pieces["test"]
    return module.pitch_range, [piece.tokens.astype(np.int64) for piece in pieces]


def test_json_has_every_number(results):
    for key in ("test/acc", "test/acc_onsets", "test/acc_pitches", "test/acc_fill", "test/recon_nll", "test/harmony",
                "test/baseline_hold_acc", "test/baseline_repeat_acc", "continuations"):
        assert isinstance(results[key], float), key
    for key in ("test/acc", "test/acc_onsets", "test/acc_pitches", "test/acc_fill"):
        assert 0 <= results[key] <= 1, key
    assert results["test/recon_nll"] > 0
    for mode in ("greedy", "sampled", "bach"):
        for statistic in (*STATISTICS, "pitch_class_distance"):
            for suffix in ("", "_ci_low", "_ci_high"):
                assert f"{mode}/{statistic}{suffix}" in results
        value = results[f"{mode}/repeat_rate"]
        assert value is None or 0 <= value <= 1  # None: NaN (no notes in the continuation)


def test_baselines_equal_the_shares_computed_from_the_test_pieces(results, held_out):
    """Offset 1: every measure from the second on is a target, and the measure before it the last input."""
    pitch_range, pieces = held_out
    targets = np.concatenate([tokens[1:].ravel() for tokens in pieces])
    previous = np.concatenate([tokens[:-1].ravel() for tokens in pieces])
    assert results["test/baseline_hold_acc"] == pytest.approx(np.mean(targets == pitch_range.hold), abs=1e-5)
    assert results["test/baseline_repeat_acc"] == pytest.approx(np.mean(targets == previous), abs=1e-5)
    assert 0.5 < results["test/baseline_hold_acc"] < 0.9  # chorales: mostly held notes


def test_continuations_use_every_long_enough_piece_and_the_real_music_as_reference(results, held_out):
    pitch_range, pieces = held_out
    long_enough = [tokens for tokens in pieces if len(tokens) >= SEED + CONTINUE]
    assert results["continuations"] == len(long_enough) == 2
    # bach/onsets_per_measure: onsets of the real continuation measures per measure and voice.
    onsets = [np.mean(np.sum(tokens[SEED:SEED + CONTINUE] < pitch_range.n_pitches, axis=-1)) for tokens in long_enough]
    assert results["bach/onsets_per_measure"] == pytest.approx(np.mean(onsets))


def test_sample_continuation_is_written(results, sample_path):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(sample_path))
    assert [i.name for i in midi.instruments] == ["soprano", "alto", "tenor", "bass"]
    assert midi.get_end_time() <= (SEED + CONTINUE) * 2.0 + 1e-6  # 4/4 at 120 bpm: 2 s a measure
    assert sample_path.with_suffix(".png").stat().st_size > 0


def _shows(cell: str, value: float, decimals: int) -> bool:
    """A printed cell is the value rounded to ``decimals`` (NaN prints as nan)."""
    if math.isnan(value):
        return cell == "nan"
    return float(cell) == pytest.approx(value, abs=0.5 * 10 ** -decimals + 1e-9)


def _text_report(checkpoint, numbers, capsys, monkeypatch) -> list[str]:
    import rmvae.evaluation

    monkeypatch.setattr(rmvae.evaluation, "evaluate_checkpoint", lambda *args, **kwargs: numbers)
    assert main(["evaluate", checkpoint]) == 0
    return capsys.readouterr().out.splitlines()


def _row(lines: list[str], label: str) -> list[str]:
    """The cells after ``label`` on the one line that starts with it (brackets and commas dropped)."""
    (line,) = [line for line in lines if line.strip().startswith(label + " ")]
    return line.strip()[len(label):].replace("[", " ").replace("]", " ").replace(",", " ").split()


def test_text_report_lists_the_same_numbers(results, checkpoint, capsys, monkeypatch):
    numbers = {k: math.nan if v is None else v for k, v in results.items()}
    lines = _text_report(checkpoint, numbers, capsys, monkeypatch)
    out = "\n".join(lines)
    # Next-measure prediction: the model beside the positional unigram (NLL, acc, onsets), no
    # direct predictor row without --direct.
    assert lines[0].startswith("next-measure prediction on the test split")
    for label, prefix in (("model", ""), ("positional unigram", "unigram_")):
        cells = _row(lines, label)
        assert len(cells) == 3, (label, cells)
        assert _shows(cells[0], numbers[f"test/{prefix}nll"], 2), label
        assert _shows(cells[1], numbers[f"test/{prefix}acc"], 3), label
        assert _shows(cells[2], numbers[f"test/{prefix}acc_onsets"], 3), label
    assert "direct predictor" not in out and "beats the direct" not in out
    gain = _row(lines, "beats the unigram by")
    assert gain[1] == "nats" and gain[4:] == ["(95%", "CI", "over", "windows)"]
    assert _shows(gain[0], numbers["test/gain_vs_unigram"], 2)
    assert _shows(gain[2], numbers["test/gain_vs_unigram_ci_low"], 2)
    assert _shows(gain[3], numbers["test/gain_vs_unigram_ci_high"], 2)
    # The other teacher-forced numbers, four decimals each, after their own heading.
    heading = lines.index("other teacher-forced numbers:")
    for key in ("acc_pitches", "acc_fill", "baseline_hold_acc", "baseline_repeat_acc", "recon_nll", "active_units",
                "kl_inputs", "harmony"):
        assert f"{key:22s} {numbers[f'test/{key}']:.4f}" in out, key
        assert lines.index(f"  {key:22s} {numbers[f'test/{key}']:.4f}") > heading, key
    # Continuation statistics: mean [95% CI] per statistic in the greedy, latent, sampled and bach modes.
    assert f"continuations of {int(numbers['continuations'])} pieces" in out and numbers["continuations"] == 2
    assert _row(lines, "statistic") == ["greedy", "latent", "sampled", "bach"]
    for statistic in (*STATISTICS, "pitch_class_distance"):
        cells = _row(lines, statistic)
        assert len(cells) == 12, (statistic, cells)
        for m, mode in enumerate(("greedy", "latent", "sampled", "bach")):
            assert _shows(cells[3 * m], numbers[f"{mode}/{statistic}"], 3), (statistic, mode)
            assert _shows(cells[3 * m + 1], numbers[f"{mode}/{statistic}_ci_low"], 2), (statistic, mode)
            assert _shows(cells[3 * m + 2], numbers[f"{mode}/{statistic}_ci_high"], 2), (statistic, mode)

    # With a direct predictor (`--direct`): its row and the model's gain over it.
    direct = {"test/direct_nll": 81.234, "test/direct_acc": 0.7412, "test/direct_acc_onsets": 0.1234,
              "test/gain_vs_direct": 3.004, "test/gain_vs_direct_ci_low": -0.5, "test/gain_vs_direct_ci_high": 6.5}
    lines = _text_report(checkpoint, {**numbers, **direct}, capsys, monkeypatch)
    assert _row(lines, "direct predictor") == ["81.23", "0.741", "0.123"]
    table = [line.strip().split("  ")[0] for line in lines[2:5]]  # under the column header, in this order
    assert table == ["model", "positional unigram", "direct predictor"]
    assert _row(lines, "beats the direct by") == ["3.00", "nats", "-0.50", "6.50", "(95%", "CI", "over", "windows)"]

    # With an autoregressive baseline too (`--autoregressive`): its row last, and the gain over it.
    autoregressive = {"test/autoregressive_nll": 70.456, "test/autoregressive_acc": 0.8123,
                      "test/autoregressive_acc_onsets": 0.2346, "test/gain_vs_autoregressive": -7.774,
                      "test/gain_vs_autoregressive_ci_low": -9.25, "test/gain_vs_autoregressive_ci_high": -6.125}
    lines = _text_report(checkpoint, {**numbers, **direct, **autoregressive}, capsys, monkeypatch)
    assert _row(lines, "autoregressive baseline") == ["70.46", "0.812", "0.235"]
    table = [line.strip().split("  ")[0] for line in lines[2:6]]
    assert table == ["model", "positional unigram", "direct predictor", "autoregressive baseline"]
    assert len({line.index(" 0.") for line in lines[2:6]}) == 1  # the accuracy column lines up
    assert _row(lines, "beats the autoregressive by") == ["-7.77", "nats", "-9.25", "-6.12", "(95%", "CI", "over",
                                                          "windows)"]


def test_gain_vs_an_autoregressive_baseline_is_the_per_window_difference(checkpoint, autoregressive_checkpoint,
                                                                        cache_dir):
    """baseline NLL − model NLL of every test window, mean and t-interval over windows; the baseline's own
    numbers are its teacher-forced test metrics (test/nll: the mean of its window NLLs)."""
    module, baseline = load_checkpoint(checkpoint), load_baseline(autoregressive_checkpoint, "autoregressive")
    datamodule = evaluation_datamodule(module, cache_dir)
    results = baseline_comparison(module, datamodule, "test", autoregressive=baseline)
    dataset = datamodule.datasets["test"]
    baseline_nll, model_nll = window_nlls(baseline, dataset), window_nlls(module, dataset)
    assert len(baseline_nll) == len(model_nll) == len(dataset) >= 2
    mean, low, high = mean_ci(baseline_nll - model_nll)
    assert (results["test/gain_vs_autoregressive"], results["test/gain_vs_autoregressive_ci_low"],
            results["test/gain_vs_autoregressive_ci_high"]) == pytest.approx((mean, low, high))
    assert results["test/autoregressive_nll"] == pytest.approx(baseline_nll.mean(), rel=1e-5)
    assert 0 <= results["test/autoregressive_acc"] <= 1 and 0 <= results["test/autoregressive_acc_onsets"] <= 1
    assert not any(key.startswith("test/direct_") or "gain_vs_direct" in key for key in results)


def test_evaluate_reports_the_autoregressive_baseline_and_passes_draws(checkpoint, autoregressive_checkpoint,
                                                                      cache_dir, capsys, monkeypatch):
    monkeypatch.setenv("RMVAE_CACHE", str(cache_dir))
    assert main(["evaluate", checkpoint, "--autoregressive", autoregressive_checkpoint, "--json", "--draws", "1",
                 "--seed-measures", str(SEED), "--continue-measures", str(CONTINUE)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["draws"] == 1.0
    for key in ("nll", "acc", "acc_onsets"):
        assert isinstance(results[f"test/autoregressive_{key}"], float), key
    assert results["test/gain_vs_autoregressive_ci_low"] <= results["test/gain_vs_autoregressive"] \
        <= results["test/gain_vs_autoregressive_ci_high"]


@pytest.mark.skipif(not THESIS_SAMPLES.is_dir(), reason="shared/anchors/thesis-samples is not checked out")
def test_midi_folder_reproduces_the_anchors_table(capsys):
    assert main(["evaluate", "--midi-folder", str(THESIS_SAMPLES), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 18 and report["skipped"] == []
    means = {name: row["mean"] for name, row in report["statistics"].items()}
    # anchors/README.md: 3.9 / 0.42 / 0.43 bits / 3.5 / 0.39 on measures 9–16.
    assert means["distinct_pitches_per_voice"] == pytest.approx(3.9, abs=0.05)
    assert means["repeat_rate"] == pytest.approx(0.42, abs=0.005)
    assert means["note_length_entropy"] == pytest.approx(0.43, abs=0.005)
    assert means["onsets_per_measure"] == pytest.approx(3.5, abs=0.05)
    assert means["dissonance_rate"] == pytest.approx(0.39, abs=0.005)


@pytest.mark.parametrize("argv, message", [
    ([], "give a CHECKPOINT, or --midi-folder DIR"),
    (["{tmp}/missing.ckpt"], r"checkpoint '.*missing.ckpt' does not exist"),
    (["--midi-folder", "{tmp}/nowhere"], r"MIDI folder '.*nowhere' does not exist"),
    (["--midi-folder", "{tmp}"], r"no usable MIDI file in '.*' \(1 skipped: notes.mid: NotMidiError"),
    (["--midi-folder", "{tmp}", "--first-measure", "0"], r"--first-measure \(1-based\)"),
    (["{ckpt}", "--seed-measures", "0"], r"at least 1 measure; got 0 and 8"),
    (["{ckpt}", "--draws", "0"], r"--draws must be at least 1; got 0"),
    # a trained baseline of the wrong kind: here the shared RMVAE itself
    (["{ckpt}", "--autoregressive", "{ckpt}"], r"'.*best.ckpt' is not an autoregressive baseline \(model.kind=rmvae\); "
                                               r"train one with `rmvae train --model.kind=autoregressive`$"),
    (["{ckpt}", "--direct", "{ckpt}"], r"is not a direct predictor \(model.kind=rmvae\)"),
])
def test_bad_input_is_one_clear_line(argv, message, checkpoint, tmp_path, capsys):
    import re

    (tmp_path / "notes.mid").write_text("not midi")
    assert main(["evaluate", *[a.format(tmp=tmp_path, ckpt=checkpoint) for a in argv]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmvae evaluate: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_two_evaluations_of_one_checkpoint_give_identical_json(results, checkpoint, cache_dir, sample_path):
    """Every number, the randomly drawn ELBO subset terms and the sampled continuations included."""
    import contextlib
    import io

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setenv("RMVAE_CACHE", str(cache_dir))
        assert main(["evaluate", checkpoint, "--json", "--seed-measures", str(SEED), "--continue-measures",
                     str(CONTINUE), "--sample", str(sample_path.with_name("again.mid"))]) == 0
    again = json.loads(stdout.getvalue())
    assert json.dumps(again, sort_keys=True) == json.dumps(results, sort_keys=True)
    assert "test/recon" in again and "test/kl" in again  # the subset terms are part of what matched


def test_continuation_modes_are_the_composers_given(checkpoint, cache_dir, held_out):
    """A mode is any Composer: one that repeats the last measure gives repeat rate 1 and the
    onsets of each piece's last seed measure, worked out here from the tokens."""
    from rmvae.evaluation import continuation_statistics
    from rmvae.tasks import Composer

    class RepeatLast(Composer):
        def predict(self, measures, present, target, known=None):
            return np.array(measures[target - 1])

    module = load_checkpoint(checkpoint)
    datamodule = evaluation_datamodule(module, cache_dir)
    stats = continuation_statistics(module, datamodule, seed_measures=SEED, continue_measures=CONTINUE,
                                    modes={"repeat": lambda seed: RepeatLast(module)})
    assert not any(key.startswith(("greedy/", "latent/", "sampled/")) for key in stats)  # only the mode given
    assert stats["repeat/repeat_rate"] == 1.0
    pitch_range, pieces = held_out
    last_seed = [np.mean(np.sum(tokens[SEED - 1] < pitch_range.n_pitches, axis=-1))
                 for tokens in pieces if len(tokens) >= SEED + CONTINUE]
    assert stats["repeat/onsets_per_measure"] == pytest.approx(np.mean(last_seed))
    assert stats["draws"] == 3.0  # recorded, though a greedy generator drew once


def test_stochastic_modes_average_their_draws_per_piece(checkpoint, cache_dir, held_out):
    """A sampling generator that repeats the last seed measure on even seeds and rests on odd ones:
    with 3 draws (seeds 5, 6, 7) each piece's onsets are 1/3 of its last seed measure's; a greedy
    generator is made once per piece."""
    from rmvae.evaluation import continuation_statistics
    from rmvae.tasks import Composer, Sampling

    class RepeatOrRest(Composer):
        def predict(self, measures, present, target, known=None):
            return np.array(measures[target - 1]) if self.sampling.seed % 2 == 0 else self.empty(1)[0]

    module = load_checkpoint(checkpoint)
    datamodule = evaluation_datamodule(module, cache_dir)
    seeds = {"stochastic": [], "greedy": []}

    def factory(mode, sampling):
        def make(seed):
            seeds[mode].append(seed)
            return RepeatOrRest(module, Sampling(seed=seed, **sampling))
        return make

    stats = continuation_statistics(module, datamodule, seed_measures=SEED, continue_measures=CONTINUE, seed=5,
                                    draws=3, modes={"stochastic": factory("stochastic", {"temperature": 1.0}),
                                                    "greedy": factory("greedy", {})})
    assert seeds == {"stochastic": [5, 6, 7] * 2, "greedy": [5, 5]} and stats["draws"] == 3.0
    pitch_range, pieces = held_out
    last_seed = [np.mean(np.sum(tokens[SEED - 1] < pitch_range.n_pitches, axis=-1))
                 for tokens in pieces if len(tokens) >= SEED + CONTINUE]
    assert stats["stochastic/onsets_per_measure"] == pytest.approx(np.mean(last_seed) / 3)
    assert stats["greedy/onsets_per_measure"] == 0.0  # seed 5 is odd: rests
