"""reports/build.py: figures + report.md from saved tables, without torch or Lightning."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest
from scipy.io import wavfile

from test_aggregate import (AUTOREGRESSIVE_FINAL, FINAL, T_2DF,  # hand-made grid folder (tests/ is on sys.path)
                            make_grid_folder)

from ablations.aggregate import aggregate
from ablations.grids import AUTOREGRESSIVE_ARM, DIRECT_ARM, DOSE_WEIGHTS
from reports import build as report_build
from reports import figures, sections, text
from reports.samples import copy_samples
from reports.tables import load_tables

REPO = Path(__file__).resolve().parent.parent


def _capturing_figures(monkeypatch) -> list:
    """Keeps ``reports.figures._save`` from writing: the figures it would save, in order."""
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda figure, path: drawn.append(figure) or path)
    return drawn


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A hand-made grid, aggregated, then its report built once in a fresh interpreter."""
    root = tmp_path_factory.mktemp("report")
    grid_dir = make_grid_folder(root)
    aggregate(grid_dir)
    for run in (grid_dir / "runs").iterdir():  # the report must need only the tables (+ samples)
        (run / "metrics.csv").unlink(missing_ok=True)
    probe = ("import runpy, sys; sys.argv = ['reports/build.py', '--grid', 'toy', '--out', sys.argv[1]]\n"
             "try:\n    runpy.run_path('reports/build.py', run_name='__main__')\n"
             "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'lightning', "
             "'pytorch_lightning', 'rmvae'} and m != 'rmvae'\n"
             "        and not m.startswith(('rmvae.config', 'rmvae.intervals', 'rmvae.files', 'rmvae.profiles')))\n"
             "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", probe, str(root)], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    return grid_dir, result.stdout


def test_report_does_not_import_torch_or_lightning(built):
    _, stdout = built
    assert "HEAVY []" in stdout


def test_report_creates_figures_samples_and_markdown(built):
    grid_dir, _ = built
    for name in ("curve_loss", "curve_accuracy", "final_metrics", "music_stats", "nll_vs_unigram", "collapse"):
        path = grid_dir / "figures" / f"{name}.png"
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG", name
    for arm in ("ref", "new"):
        assert (grid_dir / "samples" / f"{arm}.mid").exists() and (grid_dir / "samples" / f"{arm}.png").exists()
    report = (grid_dir / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    for figure in (grid_dir / "figures").glob("*.png"):
        assert f"figures/{figure.name}" in links
    for link in links:
        assert (grid_dir / link).exists(), link  # every link resolves


def test_report_states_verdicts_uncertainty_failures_and_wandb(built):
    grid_dir, _ = built
    report = (grid_dir / "report.md").read_text()
    assert "t = 4.30" in report and "2 degrees of freedom" in report and "--seeds" in report
    assert "bootstrap" in report
    lines = {line.split("|")[1].strip(): line for line in report.splitlines()
             if line.startswith(("| test/", "| greedy/")) and "`new`" in line}  # the comparison table
    assert "**new** better; interval excludes 0" in lines["test/recon_nll"]
    assert "new by the mean only; interval includes 0" in lines["test/acc"]
    assert "closer to Bach" in lines["greedy/repeat_rate"]
    assert "RuntimeError: loss is NaN at step 7" in report and "new3" in report
    assert "wandb-ref0" in report and "wandb-new2" in report
    assert "| greedy/repeat_rate | 0.02 |" in report  # Bach column of the musical statistics


def _learn_section(report: str) -> str:
    return report.split("## Does the model learn?", 1)[1].split("\n## ", 1)[0]


def test_report_opens_with_does_the_model_learn(built):
    grid_dir, _ = built
    report = (grid_dir / "report.md").read_text()
    assert report.splitlines()[0].startswith("# Ablation")
    assert re.findall(r"^## .*", report, flags=re.M)[0] == "## Does the model learn?"
    section = _learn_section(report)
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"`ref`", "`new`", f"`{DIRECT_ARM}`", "positional unigram"}
    # the unigram row: test NLL 5, acc 0.3, onset acc 0.2 (the same in every run), no gains of its own
    assert rows["positional unigram"] == "| positional unigram | 5 | 0.3 | 0.2 | — | — | — |"
    half = T_2DF / math.sqrt(3)  # sd 1 and 0.5 below, 3 seeds
    # new: NLL 8, 8.5, 9 → mean 8.5, sd 0.5; gain vs unigram −3, −3.5, −4;
    # new − direct = 1, 2, 3 → gain over the direct predictor −2, sd 1
    cells = [cell.strip() for cell in rows["`new`"].split("|")[2:-1]]
    assert cells[0] == f"8.5 [{8.5 - half / 2:.4g}, {8.5 + half / 2:.4g}]"
    assert cells[3] == f"-3.5 [{-3.5 - half / 2:.4g}, {-3.5 + half / 2:.4g}]"
    assert cells[4] == f"-2 [{-2 - half:.4g}, {-2 + half:.4g}]"
    # ref − direct = −5, −4, −3 → beats the direct predictor by 4 [4 − 2.484, 4 + 2.484]
    assert rows["`ref`"].split("|")[-3].strip() == f"4 [{4 - half:.4g}, {4 + half:.4g}]"
    assert rows[f"`{DIRECT_ARM}`"].split("|")[-3].strip() == "—"  # not compared with itself
    assert rows["`ref`"].split("|")[-2].strip() == "—"  # no autoregressive baseline in this grid
    assert "`ref` beats the positional unigram" in section  # gain 2.5 [1.26, 3.74]
    assert "`new` does not beat the positional unigram" in section  # gain −3.5 [−4.74, −2.26]
    assert f"`{DIRECT_ARM}` does not beat the positional unigram" in section  # gain −1.5 [−2.74, −0.26]
    assert "`ref` beats the direct predictor" in section
    assert "`new`: cannot tell with 3 seeds whether it beats the direct predictor" in section
    for figure in ("nll_vs_unigram", "collapse"):  # shown here, not again under "Figures"
        assert f"](figures/{figure}.png)" in section and report.count(f"](figures/{figure}.png)") == 2


def test_learn_section_shows_the_gain_over_the_autoregressive_baseline(tmp_path):
    """Its column: autoregressive NLL − arm NLL paired by seed (4 − NLL: ref 2, 1.5, 1; new −4, −4.5, −5;
    direct −3, −2.5, −2, sd 0.5 each), and its own row beside the unigram and the direct predictor."""
    grid_dir = make_grid_folder(tmp_path, final=AUTOREGRESSIVE_FINAL)
    aggregate(grid_dir)
    tables = load_tables(grid_dir)
    section = "\n".join(sections.learn_section(grid_dir, tables, ["ref", "new", DIRECT_ARM, AUTOREGRESSIVE_ARM], []))
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[-2].strip() == "beats the autoregressive baseline by"
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]] for line in lines[1:]}
    half = T_2DF * 0.5 / math.sqrt(3)
    for arm, gain in (("`ref`", 1.5), ("`new`", -4.5), (f"`{DIRECT_ARM}`", -2.5)):
        assert rows[arm][-1] == f"{gain:.4g} [{gain - half:.4g}, {gain + half:.4g}]", arm
    assert rows[f"`{AUTOREGRESSIVE_ARM}`"][0] == "4 [4, 4]" and rows[f"`{AUTOREGRESSIVE_ARM}`"][-1] == "—"
    assert rows[f"`{AUTOREGRESSIVE_ARM}`"][-2] == f"2.5 [{2.5 - half:.4g}, {2.5 + half:.4g}]"  # 7 − 4, 6.5 − 4, 6 − 4
    assert rows["positional unigram"][-3:] == ["—", "—", "—"]
    assert "`ref` beats the autoregressive baseline (gain 1.5" in section
    assert "`new` does not beat the autoregressive baseline" in section
    assert "(paired_autoregressive.csv)" in section


def test_older_folder_without_paired_autoregressive_derives_it_from_final(tmp_path):
    """A folder aggregated before paired_autoregressive.csv existed, with its tables but no run folders:
    the report derives the table from final.csv instead of aggregating (which would empty every table)."""
    import shutil

    grid_dir = make_grid_folder(tmp_path, final=AUTOREGRESSIVE_FINAL)
    expected = aggregate(grid_dir)["paired_autoregressive"]
    (grid_dir / "paired_autoregressive.csv").unlink()
    shutil.rmtree(grid_dir / "runs")
    tables = load_tables(grid_dir)
    assert not tables["final"].empty and not expected.empty
    pd.testing.assert_frame_equal(tables["paired_autoregressive"].reset_index(drop=True),
                                  expected.reset_index(drop=True), check_dtype=False)
    assert not (grid_dir / "paired_autoregressive.csv").exists()  # nothing written: the tables are as they were


def test_beats_sentence_without_a_verdict():
    straddles = text.beats("a", "positional unigram", dict(n=3, mean=0.2, ci_low=-0.1, ci_high=0.5))
    assert straddles.startswith("`a`: cannot tell with 3 seeds whether it beats the positional unigram")
    single = text.beats("a", "positional unigram", dict(n=1, mean=0.2, ci_low=math.nan, ci_high=math.nan))
    assert "cannot tell with 1 seed whether" in single and "no interval" in single


def test_nll_figure_draws_the_unigram_line(tmp_path, monkeypatch):
    grid_dir = make_grid_folder(tmp_path)
    tables = aggregate(grid_dir)
    drawn = _capturing_figures(monkeypatch)
    path = figures.plot_nll_vs_unigram(tables["runs"], tables["final"], ["ref", "new", DIRECT_ARM], tmp_path)
    assert path.name == "nll_vs_unigram.png"
    (axis,) = drawn[0].axes
    handles, labels = axis.get_legend_handles_labels()
    line = handles[labels.index("positional unigram (test)")]
    assert list(line.get_ydata()) == [5.0, 5.0] and line.get_linestyle() == "--"
    assert {"ref", "new", DIRECT_ARM} <= set(labels) and axis.get_title() == "val/nll"


def test_report_on_a_grid_without_finished_runs(tmp_path):
    grid_dir = make_grid_folder(tmp_path, final={}, failed=(("ref", 0, "ValueError: boom"),))
    report = report_build.build(grid_dir).read_text()
    assert "No figures yet" in report and "ValueError: boom" in report
    assert "## Does the model learn?" in report and "No test NLL yet" in report


def test_build_command_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "reports/build.py", "--grid", "nope", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "no grid" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- what a report can and cannot see


def test_smallest_detectable_difference_by_hand():
    assert round(text.detectable_difference(3, 1.0), 4) == 2.4841  # 4.302653 / √3
    assert text.detectable_difference(10, 2.0) == pytest.approx(2.2621571627 * 2 / math.sqrt(10), abs=1e-8)
    assert math.isnan(text.detectable_difference(1, math.nan))


def test_comparison_table_shows_the_smallest_detectable_difference(built):
    grid_dir, _ = built
    report = (grid_dir / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| metric | better is |"))
    column = [cell.strip() for cell in header.split("|")].index("smallest detectable difference")
    acc = next(line for line in report.splitlines() if line.startswith("| test/acc |") and "`new`" in line)
    # new − ref by seed on test/acc: 0.5, 1.0, 1.5 → sd 0.5, 3 seeds
    assert acc.split("|")[column].strip() == f"{T_2DF * 0.5 / math.sqrt(3):.4g}" == "1.242"
    note = report.split("*Smallest detectable difference*", 1)[1].split("\n", 1)[0]
    assert "cannot be told from zero" in note and "with 5 seeds" in note and "×0.50" in note


def test_valid_range_of_metric_names():
    for metric in ("test/acc", "train/acc_step", "val/acc_onsets", "test/unigram_acc", "greedy/repeat_rate",
                   "bach/dissonance_rate_ci_high", "latent/pitch_class_distance", "sampled/out_of_range_share"):
        assert figures.valid_range(metric) == (0.0, 1.0), metric
    for metric in ("val/nll", "test/unigram_nll", "val/recon_nll", "train/kl_inputs_epoch", "test/kl",
                   "test/recon_full_term", "greedy/note_length_entropy", "sampled/distinct_pitches_per_voice",
                   "val/active_units", "greedy/onsets_per_measure", "latent/parallel_perfects_per_note"):
        assert figures.valid_range(metric) == (0.0, None), metric
    for metric in ("test/gain_vs_unigram", "test/gain_vs_unigram_ci_low", "test/elbo", "train/loss_step",
                   "test/harmony", "lr-Adam"):
        assert figures.valid_range(metric) == (None, None), metric


def test_draws_sentence_says_how_many_draws_a_run_averages():
    summary = pd.DataFrame({"arm": ["a", "b", "a"], "metric": ["draws", "draws", "test/nll"], "mean": [3.0, 3.0, 80.0]})
    assert sections.draws_sentence(summary) == (" A run's sampled continuations are the mean of 3 draws per chorale "
                                                "(greedy: one).")
    assert "of 1 to 3 draws" in sections.draws_sentence(summary.assign(mean=[1.0, 3.0, 80.0]))
    assert sections.draws_sentence(summary[summary["metric"] != "draws"]) == ""  # runs from before draws were kept
    assert sections.draws_sentence(pd.DataFrame()) == ""


def test_bands_are_clipped_to_the_valid_range():
    half = T_2DF * 0.05 / math.sqrt(3)  # 0.9, 0.95, 1.0: mean 0.95, sd 0.05 → t-interval [0.826, 1.074]
    assert figures.band("test/acc")([0.9, 0.95, 1.0]) == pytest.approx((0.95 - half, 1.0))
    assert figures.band("test/elbo")([0.9, 0.95, 1.0]) == pytest.approx((0.95 - half, 0.95 + half))
    low, high = figures.band("val/nll")([0.0, 0.1, 0.5])  # mean 0.2, sd √0.07 → low −0.457, clipped at 0
    assert low == 0.0 and high == pytest.approx(0.2 + T_2DF * math.sqrt(0.07) / math.sqrt(3))


def _error_bars(axis) -> dict[int, tuple[float, float]]:
    """x position → (low, high) of each error bar a point plot drew (lines without markers)."""
    bars = {}
    for line in axis.lines:
        x, y = (pd.Series(line.get_xdata(), dtype=float), pd.Series(line.get_ydata(), dtype=float))
        if line.get_marker() in (None, "None", "") and y.notna().any():
            bars[int(round(x[y.notna()].median()))] = (y.min(), y.max())
    return bars


def test_no_band_for_an_arm_with_two_seeds(tmp_path, monkeypatch):
    drawn = _capturing_figures(monkeypatch)
    assert all(math.isnan(bound) for bound in figures.band("test/acc")([0.5, 0.6]))  # t(1) = 12.7: not drawn
    grid_dir = make_grid_folder(tmp_path, final={key: value for key, value in FINAL.items() if key != ("new", 2)})
    tables = aggregate(grid_dir)
    figures.plot_final_metrics(tables["final"], ["ref", "new", DIRECT_ARM], tmp_path)
    axis = next(axis for axis in drawn[0].axes if axis.get_title() == "test/acc")
    assert [label.get_text() for label in axis.get_xticklabels()] == ["ref", "new", DIRECT_ARM]
    assert set(_error_bars(axis)) == {0, 2}  # ref and the direct predictor (3 seeds), not new (2)
    assert _error_bars(axis)[0] == (0.0, 1.0)  # ref's acc 0.5, 1, 2.5: interval clipped to [0, 1]
    figures.plot_collapse(tables["runs"], ["ref", "new", DIRECT_ARM], tmp_path)
    bands = [c for c in drawn[1].axes[0].collections if len(c.get_paths())]  # val/active_units: ref, new
    assert len(bands) == 1  # only ref's
    report = report_build.build(grid_dir).read_text()
    assert "Fewer than 3 finished seeds: `new` (2). Their intervals are not shown in the figures" in report
    assert "t = 12.7" in report


def test_curves_give_each_arm_its_own_dashes(tmp_path, monkeypatch):
    grid_dir = make_grid_folder(tmp_path)
    tables = aggregate(grid_dir)
    drawn = _capturing_figures(monkeypatch)
    figures.plot_collapse(tables["runs"], ["ref", "new", DIRECT_ARM], tmp_path)
    handles, labels = drawn[0].axes[0].get_legend_handles_labels()
    styles = {label: handle.get_linestyle() for handle, label in zip(handles, labels)}
    assert styles["ref"] == "-" and styles["new"] != "-"  # identical curves stay visible


def _write_midi(path: Path, seconds: float) -> float:
    """A one-voice MIDI of half-second notes lasting ``seconds``; returns its end time as read back."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=90, pitch=60 + index % 12, start=index / 2, end=index / 2 + 0.5)
                   for index in range(int(seconds * 2))]
    midi.instruments.append(piano)
    midi.write(str(path))
    return pretty_midi.PrettyMIDI(str(path)).get_end_time()


def test_one_wav_per_arm_beside_the_midi(tmp_path):
    grid_dir = make_grid_folder(tmp_path)
    end = {"ref": _write_midi(grid_dir / "runs" / "ref0" / "sample.mid", 2.5),
           DIRECT_ARM: _write_midi(grid_dir / "runs" / f"{DIRECT_ARM}0" / "sample.mid", 40.0)}
    tables = aggregate(grid_dir)
    samples = copy_samples(grid_dir, tables["status"], ["ref", "new", DIRECT_ARM])
    from reports.samples import WAV_RATE, WAV_SECONDS

    assert end["ref"] < WAV_SECONDS < end[DIRECT_ARM]
    for arm, seconds in (("ref", end["ref"]), (DIRECT_ARM, WAV_SECONDS)):  # capped
        assert samples[arm]["wav"] == f"samples/{arm}.wav"
        rate, audio = wavfile.read(grid_dir / samples[arm]["wav"])
        assert rate == WAV_RATE and audio.dtype == np.int16 and np.abs(audio).max() == 32767
        assert abs(len(audio) / rate - seconds) <= 0.1, (arm, len(audio) / rate)
    assert "wav" not in samples["new"] and samples["new"]["unreadable"]  # b"MThd" is no MIDI file
    assert not (grid_dir / "samples" / "new.wav").exists()


def test_report_lists_an_unreadable_midi_and_links_wavs(built):
    grid_dir, _ = built  # the toy grid's samples are 4-byte stubs: unreadable, and the build did not crash
    report = (grid_dir / "report.md").read_text()
    assert "- `ref`: [MIDI](samples/ref.mid), MIDI unreadable, no WAV (" in report
    from reports.samples import WAV_SECONDS

    assert f"first {WAV_SECONDS:.0f} s" in report


# ---------------------------------------------------------------- dose-response grids

# harmony_weight grid, 3 seeds: test NLL and latent/dissonance_rate per weight (Bach 0.15)
DOSE_NLL = {0.0: (2.0, 2.1, 2.2), 0.03: (2.0, 2.1, 2.2), 0.3: (2.1, 2.2, 2.3), 1.0: (2.3, 2.3, 2.3),
            3.0: (2.5, 2.7, 2.6)}  # 3 − 0 by seed: 0.5, 0.6, 0.4 → mean 0.5, sd 0.1
DOSE_RATE = {0.0: (0.30, 0.32, 0.28), 0.03: (0.30, 0.31, 0.29), 0.3: (0.28, 0.30, 0.26), 1.0: (0.25, 0.25, 0.25),
             3.0: (0.20, 0.20, 0.20)}  # 3 − 0 by seed: −0.1, −0.12, −0.08 → mean −0.1, sd 0.02


def make_dose_folder(root: Path, grid: str = "harmony_weight", nll=DOSE_NLL, stat=DOSE_RATE,
                     metric: str = "latent/dissonance_rate") -> Path:
    """A dose-response grid folder by hand (grid.json, run.json, test_metrics.json, DONE; seeds 0-2 of the
    weights in ``nll``), aggregated. The reference is not the weight-0 arm (as in a grid whose baseline
    is a weight > 0): the report pairs with weight 0 itself."""
    term, weights = DOSE_WEIGHTS[grid]
    arms = {f"{term}_w{w:g}": w for w in weights}
    overrides = {arm: {"loss.harmony_weights": [w] * 3} if term == "harmony" else {"loss.scale_weight": w}
                 for arm, w in arms.items()}
    grid_dir = Path(root) / grid
    grid_dir.mkdir(parents=True)
    (grid_dir / "grid.json").write_text(json.dumps(dict(
        grid_version=1, grid=grid, profile="cpu", reference=list(arms)[1], arm_order=list(arms),
        arms={arm: dict(overrides=overrides[arm], config={}) for arm in arms})))
    for arm, weight in arms.items():
        for seed in range(3) if weight in nll else ():
            run_dir = grid_dir / "runs" / f"{arm}-{seed}"
            run_dir.mkdir(parents=True)
            (run_dir / "run.json").write_text(json.dumps(dict(run_id=run_dir.name, grid=grid, arm=arm, seed=seed)))
            metrics = {"test/nll": nll[weight][seed], f"bach/{metric.split('/')[1]}": 0.15}
            metrics.update({metric: stat[weight][seed]} if stat else {})
            (run_dir / "test_metrics.json").write_text(json.dumps(metrics))
            (run_dir / "DONE").write_text("done\n")
    aggregate(grid_dir)
    return grid_dir


def test_dose_response_report_by_hand(tmp_path):
    assert sections.GRADIENT_SHARE_RATIO == {"harmony": 0.289, "scale": 0.159}
    report = report_build.build(make_dose_folder(tmp_path)).read_text()
    section = report.split("## Dose response", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in section.splitlines() if line.startswith("| ") and "`" in line.split("|")[1]}
    assert list(rows) == ["0 (`harmony_w0`)", "0.03 (`harmony_w0.03`)", "0.3 (`harmony_w0.3`)",
                          "1 (`harmony_w1`)", "3 (`harmony_w3`)"]
    assert [cells[0] for cells in rows.values()] == ["0 %", "0.867 %", "8.67 %", "28.9 %", "86.7 %"]
    half_nll, half_rate = T_2DF * 0.1 / math.sqrt(3), T_2DF * 0.02 / math.sqrt(3)
    assert rows["0 (`harmony_w0`)"][1:3] == [f"2.1 [{2.1 - half_nll:.4g}, {2.1 + half_nll:.4g}]",
                                             f"0.3 [{0.3 - half_rate:.4g}, {0.3 + half_rate:.4g}]"]
    assert rows["0 (`harmony_w0`)"][3:] == ["—", "—"]  # not compared with itself
    top = rows["3 (`harmony_w3`)"]
    assert top[2] == "0.2 [0.2, 0.2]"  # sd 0: a zero-width interval
    assert top[3] == f"0.5 [{0.5 - half_nll:.4g}, {0.5 + half_nll:.4g}]"
    assert top[4] == f"-0.1 [{-0.1 - half_rate:.4g}, {-0.1 + half_rate:.4g}]"
    assert rows["1 (`harmony_w1`)"][3] == f"0.2 [{0.2 - half_nll:.4g}, {0.2 + half_nll:.4g}]"  # 0.3, 0.2, 0.1
    assert (f"The largest weight with results (3) lowers `latent/dissonance_rate` by "
            f"0.1 [{0.1 - half_rate:.4g}, {0.1 + half_rate:.4g}] (detectable) at a cost of "
            f"0.5 [{0.5 - half_nll:.4g}, {0.5 + half_nll:.4g}] nats of test NLL (detectable).") in section
    assert "held-out Bach 0.15" in section and "Missing" not in section
    figure = tmp_path / "harmony_weight" / "figures" / "dose_response.png"
    assert figure.read_bytes()[:4] == b"\x89PNG" and "](figures/dose_response.png)" in section


def test_dose_response_not_detectable_and_missing(tmp_path):
    nll = {0.0: (2.0, 2.0, 2.0), 0.6: (2.0, 2.1, 2.2), 20.0: (2.1, 1.9, 2.0)}  # no 0.06 and 2 arms
    stat = {0.0: (0.2, 0.2, 0.2), 0.6: (0.2, 0.2, 0.2), 20.0: (0.3, 0.15, 0.25)}  # +0.1, −0.05, +0.05
    report = report_build.build(make_dose_folder(tmp_path, "scale_weight", nll, stat,
                                                  "latent/pitch_class_distance")).read_text()
    section = report.split("## Dose response", 1)[1].split("\n## ", 1)[0]
    assert "Missing (no finished runs or not in their test metrics): `scale_w0.06`, `scale_w2`." in section
    assert "| 20 (`scale_w20`) | 318 % |" in section
    half = T_2DF * math.sqrt(0.0175 / 3) / math.sqrt(3)  # mean 1/30, variance (0.0667² + 0.0833² + 0.0167²)/2
    assert f"(20) raises `latent/pitch_class_distance` by 0.03333 [{1 / 30 - half:.4g}, {1 / 30 + half:.4g}]" in section
    assert "(not detectable at 3 seeds) at a cost of 0 [" in section
    # no statistic at all: said in one line, no crash, the NLL panel alone
    report = report_build.build(make_dose_folder(tmp_path / "none", stat=None)).read_text()
    assert "`latent/dissonance_rate`." in report and "No paired comparison of a weight with weight 0 yet." in report
    assert (tmp_path / "none" / "harmony_weight" / "figures" / "dose_response.png").exists()


# ---------------------------------------------------------------- the thesis's conclusion

# harmony grid, 3 seeds (the reference is harmony_on, as in the real grid: paired.csv holds off − on).
# test/acc on − off by seed: 0.1, 0.12, 0.08 (mean 0.1, sd 0.02); test/nll: 0.05, −0.05, 0 (mean 0, sd 0.05);
# greedy/repeat_rate against Bach 0.02: distances on 0.1, 0.1, 0.1, off 0.3, 0.32, 0.28 → −0.2, −0.22, −0.18.
CLAIM_OFF = {"test/acc": (0.5, 0.6, 0.7), "test/nll": (2.0, 2.1, 2.2), "greedy/repeat_rate": (0.32, 0.34, 0.30)}
CLAIM_ON = {"test/acc": (0.6, 0.72, 0.78), "test/nll": (2.05, 2.05, 2.2), "greedy/repeat_rate": (0.12, 0.12, 0.12)}
HALF_002 = T_2DF * 0.02 / math.sqrt(3)  # 0.04968: the interval's half-width for sd 0.02


def make_claim_folder(root: Path, values: dict[str, dict[str, tuple]], grid: str = "harmony",
                      reference: str = "harmony_on") -> Path:
    """A grid folder by hand: ``values`` arm → metric → one value per seed; every run has bach/repeat_rate 0.02.
    Aggregated; the report is then written from the saved tables alone."""
    grid_dir = Path(root) / grid
    grid_dir.mkdir(parents=True)
    (grid_dir / "grid.json").write_text(json.dumps(dict(grid_version=1, grid=grid, profile="cpu", reference=reference,
                                                        arm_order=list(values), arms={a: {} for a in values})))
    for arm, metrics in values.items():
        for seed in range(len(next(iter(metrics.values())))):
            run_dir = grid_dir / "runs" / f"{arm}-{seed}"
            run_dir.mkdir(parents=True)
            (run_dir / "run.json").write_text(json.dumps(dict(run_id=run_dir.name, grid=grid, arm=arm, seed=seed)))
            test_metrics = {"bach/repeat_rate": 0.02, **{m: v[seed] for m, v in metrics.items()}}
            (run_dir / "test_metrics.json").write_text(json.dumps(test_metrics))
            (run_dir / "DONE").write_text("done\n")
    aggregate(grid_dir)
    return grid_dir


def _thesis_report(grid_dir: Path) -> tuple[str, str]:
    """The report (figures and samples left out) and its thesis section."""
    report = report_build.write_report(grid_dir, load_tables(grid_dir), [], {}).read_text()
    return report, report.split("## What the thesis concluded, and the evidence here", 1)[1].split("\n## ", 1)[0]


def _claim(section: str, claim: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"- The thesis concluded that {claim}."))


def test_thesis_claim_evidence_against(tmp_path):
    report, section = _thesis_report(make_claim_folder(tmp_path, {"harmony_on": CLAIM_ON, "harmony_off": CLAIM_OFF}))
    headings = re.findall(r"^## .*", report, flags=re.M)
    assert headings[:3] == ["## Does the model learn?", "## What the thesis concluded, and the evidence here",
                            "## Arms"]
    assert "don't help the training" in section
    sentence = _claim(section, "the harmony loss does not help")
    assert "(`harmony_on` − `harmony_off`, paired by seed, 3 seeds, 3 judged metrics)" in sentence
    assert f"`test/acc` (higher) 0.1 [{0.1 - HALF_002:.4g}, {0.1 + HALF_002:.4g}]" in sentence
    assert "0.1 [0.05032, 0.1497]" in sentence  # the same, worked out: 0.1 ± 4.302653 · 0.02 / √3
    assert f"`greedy/repeat_rate` (closer to Bach) -0.2 [{-0.2 - HALF_002:.4g}, {-0.2 + HALF_002:.4g}]" in sentence
    assert "`harmony_on` is better on `greedy/repeat_rate`" in sentence and "`harmony_off` is better" not in sentence
    assert "test/nll" not in sentence  # its interval (mean 0) includes 0
    assert sentence.endswith("— evidence against the thesis's conclusion.")


def test_thesis_claim_consistent_mixed_and_hurting(tmp_path):
    noise = {**CLAIM_ON, "test/acc": (0.6, 0.5, 0.7), "greedy/repeat_rate": (0.33, 0.33, 0.31)}  # acc 0.1, −0.1, 0
    _, section = _thesis_report(make_claim_folder(tmp_path / "a", {"harmony_on": noise, "harmony_off": CLAIM_OFF}))
    sentence = _claim(section, "the harmony loss does not help")
    # test/nll on − off: 0.05, −0.05, 0 → sd 0.05 → smallest detectable difference 4.302653·0.05/√3 = 0.1242
    assert sentence.endswith("no judged metric separates the arms: consistent with it (the smallest `test/nll` "
                             f"difference it could have seen is {T_2DF * 0.05 / math.sqrt(3):.4g} nats).")
    assert "0.1242 nats" in sentence
    worse = {**CLAIM_ON, "test/nll": (2.1, 2.22, 2.28)}  # on − off: 0.1, 0.12, 0.08: detectably worse
    _, section = _thesis_report(make_claim_folder(tmp_path / "b", {"harmony_on": worse, "harmony_off": CLAIM_OFF}))
    sentence = _claim(section, "the harmony loss does not help")
    assert f"`harmony_off` is better on `test/nll` (lower) 0.1 [{0.1 - HALF_002:.4g}, {0.1 + HALF_002:.4g}]" in sentence
    assert "`harmony_on` is better on `greedy/repeat_rate`" in sentence and "`test/acc` (higher) 0.1 [" in sentence
    assert sentence.endswith("— mixed (`harmony_on` is better on some metrics but worse on `test/nll`).")
    only_worse = {**noise, "test/nll": worse["test/nll"]}
    _, section = _thesis_report(make_claim_folder(tmp_path / "c", {"harmony_on": only_worse, "harmony_off": CLAIM_OFF}))
    assert _claim(section, "the harmony loss does not help").endswith(
        "— consistent with it (`harmony_off` is better wherever the arms separate).")


def test_thesis_claim_from_final_when_not_paired_with_the_reference(tmp_path):
    """rpoe_on and rpoe_off are both compared with temporal_prior: their difference comes from final.csv."""
    values = {"temporal_prior": CLAIM_OFF, "rpoe_on": CLAIM_ON, "rpoe_off": CLAIM_OFF}
    _, section = _thesis_report(make_claim_folder(tmp_path, values, "rpoe", "temporal_prior"))
    sentence = _claim(section, "the RPoE layer does not help")
    assert "(`rpoe_on` − `rpoe_off`, paired by seed, 3 seeds, 3 judged metrics)" in sentence
    assert "`test/acc` (higher) 0.1 [0.05032, 0.1497]" in sentence
    assert "(closer to Bach) -0.2 [-0.2497, -0.1503]" in sentence
    assert sentence.endswith("— evidence against the thesis's conclusion.")


def test_thesis_claims_in_the_all_grid(tmp_path):
    """`harmony_on` is merged into `baseline`; no scale_rhythm_off runs: that claim is left out."""
    values = {"baseline": CLAIM_ON, "harmony_off": CLAIM_OFF, "rpoe_on": CLAIM_OFF, "rpoe_off": CLAIM_OFF}
    _, section = _thesis_report(make_claim_folder(tmp_path, values, "all", "baseline"))
    harmony = _claim(section, "the harmony loss does not help")
    assert "(`baseline` − `harmony_off`, paired by seed" in harmony and "0.1 [0.05032, 0.1497]" in harmony
    assert harmony.endswith("— evidence against the thesis's conclusion.")
    assert "no judged metric separates the arms: consistent with it" in _claim(section, "the RPoE layer does not help")
    assert "scale and rhythm" not in section


def test_thesis_claim_without_enough_runs_and_without_a_claim(tmp_path):
    one_seed = {arm: {m: v[:1] for m, v in metrics.items()} for arm, metrics in
                (("harmony_on", CLAIM_ON), ("harmony_off", CLAIM_OFF))}
    _, section = _thesis_report(make_claim_folder(tmp_path / "one", one_seed))
    assert _claim(section, "the harmony loss does not help").endswith(
        "This grid cannot judge it: 1 paired seed of `harmony_on` and `harmony_off` (2 needed).")
    _, section = _thesis_report(make_claim_folder(tmp_path / "half", {"harmony_on": CLAIM_ON}))
    assert _claim(section, "the harmony loss does not help").endswith(
        "Not checked here: no finished runs of `harmony_off`.")
    values = {"transposed": CLAIM_ON, "raw": CLAIM_OFF}
    report, section = _thesis_report(make_claim_folder(tmp_path / "t", values, "transpose", "transposed"))
    assert section.strip() == ("The thesis stated no conclusion for `transpose` (it compared its arms in listener "
                               "polls only): there is no claim to check here.")


def test_publish_copies_the_report_without_runs_and_checkpoints(built, tmp_path):
    from reports.publish import RUNS_LINK, publish

    grid_dir, _ = built
    assert RUNS_LINK in (grid_dir / "report.md").read_text()  # the link publish rewrites is the report's
    target = publish(grid_dir, tmp_path / "results")
    assert target == tmp_path / "results" / grid_dir.name
    published = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert "report.md" in published and "final.csv" in published and "summary.csv" in published
    assert not any(name.startswith("runs") for name in published)  # neither runs.csv nor run folders
    report = (target / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (target / link).exists(), link  # every link of the published copy resolves
    for figure in (grid_dir / "figures").glob("*.png"):
        assert (target / "figures" / figure.name).read_bytes() == figure.read_bytes()
