"""Figures and a Markdown report of one ablation grid, from its saved tables only.

Usage (from the repository root)::

    python reports/build.py --grid harmony [--out reports/] [--aggregate]

Reads ``OUT/<grid>/{runs,final,summary,paired,paired_direct,status}.csv`` and ``grid.json`` (written by
``ablations/aggregate.py``; built first if missing, or with ``--aggregate``) and writes
``OUT/<grid>/figures/*.png``, ``OUT/<grid>/samples/<arm>.{mid,png,wav}`` and
``OUT/<grid>/report.md``. Nothing is trained and neither torch nor Lightning is imported,
so a report can be rebuilt anywhere the tables are.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `ablations` from the repo root
    _REPO = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "reports"]
    sys.path.insert(0, str(_REPO))

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pretty_midi
import seaborn as sns
from scipy.io import wavfile

from ablations import atomic_write_text
from ablations.aggregate import (aggregate, mean_interval, metric_direction, paired_table, read_grid, reference_key,
                                 t_errorbar)
from ablations.grids import BASELINE_ARM, DIRECT_ARM, DOSE_WEIGHTS, dose_arm
from rmvae.intervals import t_critical

TABLES = ("runs", "final", "summary", "paired", "paired_direct", "status")
# Learning curves: one figure per quantity, one panel per stage (train, val), arms as hues.
CURVES = {"loss": "loss", "kl": "kl", "accuracy": "acc", "harmony": "harmony"}
DIRECTION_WORDS = {"higher": "higher", "lower": "lower", "closer": "closer to Bach", "none": "—"}

# "Does the model learn?": each arm's test metric beside the positional unigram's on the same split.
LEARN_METRICS = {"test/nll": "test/unigram_nll", "test/acc": "test/unigram_acc",
                 "test/acc_onsets": "test/unigram_acc_onsets"}
COMPARISON_NLL = "test/nll"  # the comparison metric (checkpoints are selected on val/nll)
GAIN_VS_UNIGRAM = "test/gain_vs_unigram"  # unigram NLL − arm NLL, per run
UNIGRAM = "positional unigram"
VAL_NLL = "val/nll"
COLLAPSE_CURVES = ("val/active_units", "val/kl_inputs")
MIN_BAND_SEEDS = 3  # a t-interval from 2 values uses t(1) = 12.7 and says nothing: none is drawn
WAV_RATE, WAV_SECONDS = 22050, 30.0  # sample WAVs: sine synthesis, first 30 s (small files)
# Values a metric can take, on its last name part without _step/_epoch/_ci_low/_ci_high; first match
# wins (fnmatch); None: unbounded on that side. A t band past a bound would show impossible values.
VALID_RANGES = {
    "gain_vs_*": (None, None),  # a difference of NLLs: either sign
    "*acc*": (0.0, 1.0), "*rate*": (0.0, 1.0), "pitch_class_distance": (0.0, 1.0),  # shares; total variation
    "kl*": (0.0, None), "*nll": (0.0, None), "recon*": (0.0, None), "*entropy": (0.0, None),
    "distinct_pitches*": (0.0, None), "active_units": (0.0, None), "onsets_per_measure": (0.0, None),
}
# Dose-response grids (ablations.grids.DOSE_WEIGHTS): ‖∇term‖/‖∇ELBO‖ of each unweighted music term, so that
# a weight w has the gradient share w × ratio. Measured by benchmarks/music_loss_share.py on ONE checkpoint
# (default design, cpu profile, seed 0, 6 training batches): an order of magnitude, not a per-run measurement.
GRADIENT_SHARE_RATIO = {"harmony": 0.289, "scale": 0.159}
# The musical statistic of latent-sampled continuations each term should move (compared with bach/<name>).
DOSE_STATISTIC = {"harmony": "latent/dissonance_rate", "scale": "latent/pitch_class_distance"}


# The thesis's conclusion (its slides, "Conclusion": "The different loss functions and the RPoE layer don't help
# the training"), per grid: (the claim, the arm with the feature, the arm without it). Transpose and size it
# judged by listener polls only; the other grids are this project's own.
THESIS_CONCLUSIONS: dict[str, tuple[str, str, str]] = {
    "harmony": ("the harmony loss does not help", "harmony_on", "harmony_off"),
    "scale_rhythm": ("the scale and rhythm losses do not help", "scale_rhythm_on", "scale_rhythm_off"),
    "rpoe": ("the RPoE layer does not help", "rpoe_on", "rpoe_off"),
}
POLLED_ONLY = ("transpose", "size")  # the thesis ran listener polls and stated no conclusion in its text


def load_tables(grid_dir: Path, refresh: bool = False) -> dict[str, pd.DataFrame]:
    """The saved tables of a grid; aggregates the run folders first if a table is missing."""
    grid_dir = Path(grid_dir)
    if refresh or not all((grid_dir / f"{name}.csv").exists() for name in TABLES):
        aggregate(grid_dir)
    tables = {}
    for name in TABLES:
        try:
            tables[name] = pd.read_csv(grid_dir / f"{name}.csv")
        except pd.errors.EmptyDataError:
            tables[name] = pd.DataFrame()
    return tables


def _arm_order(grid: dict, *frames: pd.DataFrame) -> list[str]:
    arms = list(grid.get("arm_order") or grid.get("arms", {}))
    for frame in frames:
        if "arm" in frame:
            arms += [arm for arm in dict.fromkeys(frame["arm"].dropna()) if arm not in arms]
    return arms


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(figure)
    tmp.replace(path)
    return path


def valid_range(metric: str) -> tuple[float | None, float | None]:
    """``(low, high)`` a metric can take (None: unbounded on that side), from :data:`VALID_RANGES`:
    a share lies in [0, 1], an NLL, KL or count is never negative."""
    name = metric.split("/")[-1]
    for suffix in ("_ci_low", "_ci_high", "_step", "_epoch"):
        name = name.removesuffix(suffix)
    for pattern, bounds in VALID_RANGES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return bounds
    return None, None


def band(metric: str):
    """Seaborn ``errorbar=`` callable for one metric: :func:`t_errorbar`'s 95 % t-interval clipped to
    :func:`valid_range` (an accuracy band never runs past 1), and none at all from fewer than
    :data:`MIN_BAND_SEEDS` values, where the interval would say nothing (NaN: seaborn draws nothing)."""
    low_bound, high_bound = valid_range(metric)

    def errorbar(values) -> tuple[float, float]:
        values = [value for value in values if not pd.isna(value)]
        if len(values) < MIN_BAND_SEEDS:
            return math.nan, math.nan
        low, high = t_errorbar(values)
        return (low if low_bound is None else max(low, low_bound),
                high if high_bound is None else min(high, high_bound))
    return errorbar


def _curve_figure(runs: pd.DataFrame, arms: list[str], metrics: list[str], ylabel: str | None = None):
    """One panel per metric, arms as hues: the mean over seeds with its 95 % Student-t band
    against the training step. Every curve figure is drawn here so that all read alike; each arm
    also has its own dash pattern, so that two arms with identical curves both stay visible.

    Returns:
        The figure and its axes (one per metric), for the caller to annotate and save.
    """
    runs = runs.dropna(subset=["step"])
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False,
                                layout="constrained")
    for axis, metric in zip(axes[0], metrics):
        data = runs[runs["metric"] == metric]
        order = [a for a in arms if a in set(data["arm"])]
        sns.lineplot(data=data, x="step", y="value", hue="arm", hue_order=order, style="arm", style_order=order,
                     estimator="mean", errorbar=band(metric), ax=axis,
                     marker="o" if data["step"].nunique() <= 20 else None)  # few points: show them
        axis.set_title(metric)
        axis.set_ylabel(ylabel or metric)
    return figure, list(axes[0])


def _logged(runs: pd.DataFrame, metrics) -> list[str]:
    """Those of ``metrics`` that some run logged with a step (old runs lack the newer ones)."""
    present = set(runs.dropna(subset=["step"])["metric"]) if not runs.empty else set()
    return [metric for metric in metrics if metric in present]


def plot_learning_curves(runs: pd.DataFrame, arms: list[str], folder: Path) -> list[Path]:
    """Mean over seeds per arm with a 95 % Student-t band, against the training step."""
    paths = []
    if runs.empty:
        return paths
    for name, suffix in CURVES.items():
        # Lightning names per-step train values `train/loss_step`; `_epoch` repeats them
        metrics = _logged(runs, sorted(m for m in runs["metric"].unique()
                                       if m.split("/")[-1] in (suffix, f"{suffix}_step")))
        if not metrics:
            continue
        figure, _ = _curve_figure(runs, arms, metrics, ylabel=name)
        figure.suptitle(f"{name}: mean over seeds, 95 % t-interval band")
        paths.append(_save(figure, folder / f"curve_{name}.png"))
    return paths


def _levels(final: pd.DataFrame, metric: str) -> list[float]:
    """The distinct values of a metric over runs: one for the unigram, unless arms differ in their
    data (e.g. transposed vs raw pieces), where each data setting has its own unigram."""
    if final.empty:
        return []
    values = final.loc[final["metric"] == metric, "value"].dropna()
    return sorted(set(values.round(6)))


def plot_nll_vs_unigram(runs: pd.DataFrame, final: pd.DataFrame, arms: list[str], folder: Path) -> Path | None:
    """``val/nll`` per arm over training against the positional unigram's test NLL (dashed): a curve
    that stays above the line has learnt less than counting notes per position in the measure."""
    metrics = _logged(runs, [VAL_NLL])
    if not metrics:
        return None
    figure, (axis,) = _curve_figure(runs, arms, metrics, ylabel="nats per target measure")
    for index, level in enumerate(_levels(final, LEARN_METRICS[COMPARISON_NLL])):
        axis.axhline(level, color="black", linestyle="--", label=f"{UNIGRAM} (test)" if index == 0 else None)
    axis.legend(loc="best", fontsize="small")
    figure.suptitle("validation NLL: mean over seeds, 95 % t-interval band; dashed: positional unigram")
    return _save(figure, folder / "nll_vs_unigram.png")


def plot_collapse(runs: pd.DataFrame, arms: list[str], folder: Path) -> Path | None:
    """Active units and KL of the input posteriors per arm over training: both near 0 mean the
    latents carry nothing (posterior collapse), which an NLL alone does not show."""
    metrics = _logged(runs, COLLAPSE_CURVES)
    if not metrics:
        return None
    figure, _ = _curve_figure(runs, arms, metrics)
    figure.suptitle("collapse diagnostics: mean over seeds, 95 % t-interval band")
    return _save(figure, folder / "collapse.png")


def _point_panels(final: pd.DataFrame, arms: list[str], metrics: list[str], title: str, path: Path,
                  bach: bool = False) -> Path:
    """One point plot per metric (arms on the x axis, so equal values cannot hide each other), mean
    over seeds with the metric's :func:`band`; with ``bach``, the held-out Bach value dashed."""
    columns = min(4, len(metrics))
    rows = -(-len(metrics) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False,
                                layout="constrained")
    for axis, metric in zip(axes.flat, metrics):
        data = final[final["metric"] == metric]
        sns.pointplot(data=data, x="arm", y="value", order=[a for a in arms if a in set(data["arm"])],
                      errorbar=band(metric), linestyles="none", capsize=0.2, ax=axis)
        if bach:
            axis.axhline(final.loc[final["metric"] == reference_key(metric), "value"].mean(), color="black",
                         linestyle="--", label="Bach")
            axis.legend(loc="best", fontsize="small")
        axis.set_title(metric)
        plt.setp(axis.get_xticklabels(), rotation=30, ha="right")
    for axis in list(axes.flat)[len(metrics):]:
        axis.set_visible(False)
    figure.suptitle(title)
    return _save(figure, path)


def plot_final_metrics(final: pd.DataFrame, arms: list[str], folder: Path) -> Path | None:
    """Point plot per arm (95 % t-interval) of every test metric with a higher/lower direction."""
    metrics = [m for m in dict.fromkeys(final.get("metric", ())) if metric_direction(m) in ("higher", "lower")]
    return _point_panels(final, arms, metrics, "final test metrics: mean over seeds, 95 % t-interval",
                         folder / "final_metrics.png") if metrics else None


def _music_metrics(frame: pd.DataFrame) -> list[str]:
    """The musical statistics of a table that have a Bach value to be compared with."""
    present = set(frame.get("metric", ()))
    return [m for m in dict.fromkeys(frame.get("metric", ())) if metric_direction(m) == "closer"
            and reference_key(m) in present]


def plot_music_stats(final: pd.DataFrame, arms: list[str], folder: Path) -> Path | None:
    """Musical statistics of each arm beside the Bach reference (dashed line)."""
    metrics = _music_metrics(final)
    return _point_panels(final, arms, metrics, "musical statistics per arm (95 % t-interval) against held-out "
                         "Bach (dashed)", folder / "music_stats.png", bach=True) if metrics else None


def dose_weights(grid_name: str) -> dict[str, float]:
    """arm → weight of a dose-response grid, ascending (:data:`ablations.grids.DOSE_WEIGHTS`)."""
    term, weights = DOSE_WEIGHTS[grid_name]
    return {dose_arm(term, weight): weight for weight in sorted(weights)}


def plot_dose_response(final: pd.DataFrame, term: str, weights: dict[str, float], folder: Path) -> Path | None:
    """Test NLL and the term's statistic against the weight (symlog, so 0 shows), mean over seeds with
    :func:`band`; the held-out Bach value dashed."""
    metrics = [m for m in (COMPARISON_NLL, DOSE_STATISTIC[term]) if m in set(final.get("metric", ()))]
    data = final[final["arm"].isin(weights)].assign(weight=lambda f: f["arm"].map(weights)) if metrics else []
    if len(data) == 0:
        return None
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False, layout="constrained")
    ticks = list(weights.values())
    low = min([w for w in ticks if w > 0] or [1.0])  # symlog: linear below the smallest weight, so 0 shows
    for axis, metric in zip(axes[0], metrics):
        sns.lineplot(data=data[data["metric"] == metric], x="weight", y="value", estimator="mean",
                     errorbar=band(metric), err_style="bars", marker="o", ax=axis)
        bach = final.loc[final["metric"] == reference_key(metric), "value"]
        if metric != COMPARISON_NLL and not bach.empty:
            axis.axhline(bach.mean(), color="black", linestyle="--", label="Bach")
            axis.legend(loc="best", fontsize="small")
        axis.set_xscale("symlog", linthresh=low)
        axis.set(title=metric, xlabel=f"{term} weight (symlog)", ylabel=metric, xlim=(-low / 2, 2 * max(ticks)),
                 xticks=ticks, xticklabels=[f"{w:g}" for w in ticks])
        axis.minorticks_off()
    figure.suptitle("dose response: mean over seeds, 95 % t-interval")
    return _save(figure, folder / "dose_response.png")


def render_wav(midi_path: Path, wav_path: Path, seconds: float = WAV_SECONDS, rate: int = WAV_RATE) -> Path:
    """A sample to listen to without a MIDI player: ``pretty_midi``'s sine synthesis (no soundfont),
    cut at the MIDI's end (pretty_midi pads 1 s) and at ``seconds`` to keep files small, peak-normalised
    int16. Raises whatever pretty_midi raises on a file it cannot read."""
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    audio = np.zeros(int(round(rate * min(midi.get_end_time(), seconds))))
    synthesized = midi.synthesize(fs=rate)[:len(audio)]
    audio[:len(synthesized)] = synthesized
    peak = np.abs(audio).max() if len(audio) else 0.0
    pcm = (audio * (32767 / peak) if peak > 0 else audio).astype(np.int16)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav_path.with_name(f".{wav_path.stem}.tmp.wav")
    wavfile.write(tmp, rate, pcm)
    tmp.replace(wav_path)
    return wav_path


def _add_wav(grid_dir: Path, arm: str, files: dict[str, str]) -> None:
    """Render ``samples/<arm>.wav`` beside the arm's MIDI; a MIDI that will not load is marked
    ``unreadable`` (with the reason) in ``files``, so one bad file costs its WAV, not the report."""
    wav = grid_dir / "samples" / f"{arm}.wav"
    try:
        render_wav(grid_dir / files["mid"], wav)
        files["wav"] = f"samples/{arm}.wav"
    except Exception as error:  # any parse failure of a saved file means "unreadable"
        wav.unlink(missing_ok=True)  # no stale WAV of an earlier sample
        reason = str(error).strip().splitlines()
        files["unreadable"] = f"{type(error).__name__}: {reason[0] if reason else ''}"[:160]


def copy_samples(grid_dir: Path, status: pd.DataFrame, arms: list[str]) -> dict[str, dict[str, str]]:
    """One sample per arm (lowest finished seed): ``samples/<arm>.mid`` and ``.png`` copied, and
    ``.wav`` rendered from the MIDI (:func:`_add_wav`)."""
    samples = {}
    if status.empty:
        return samples
    done = status[status["status"] == "done"].sort_values("seed")
    for arm in arms:
        for run_id in done.loc[done["arm"] == arm, "run_id"]:
            run_dir = grid_dir / "runs" / str(run_id)
            files = {}
            for suffix in ("mid", "png"):
                source = run_dir / f"sample.{suffix}"
                if source.exists():
                    target = grid_dir / "samples" / f"{arm}.{suffix}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    files[suffix] = f"samples/{arm}.{suffix}"
            if "mid" in files:
                _add_wav(grid_dir, arm, files)
            if files:
                samples[arm] = files
                break
    return samples


def _fmt(value, digits: int = 4) -> str:
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.{digits}g}"


def _interval(row) -> str:
    if pd.isna(row["ci_low"]):
        return f"{_fmt(row['mean'])} (n={int(row['n'])})"
    return f"{_fmt(row['mean'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


def _verdict(row) -> str:
    if row["direction"] == "none" or not row["better"]:
        return "no direction (descriptive)"
    if row["better"] == "tie":
        return "tie"
    if row["excludes_zero"]:
        return f"**{row['better']}** better; interval excludes 0"
    return f"{row['better']} by the mean only; interval includes 0 (not resolved)"


def _unigram_cell(final: pd.DataFrame, metric: str) -> str:
    """The positional unigram's value of a metric; a range where arms' data settings differ."""
    levels = _levels(final, metric)
    if len(levels) > 1:
        return f"{_fmt(levels[0])} – {_fmt(levels[-1])} (differs by data setting)"
    return _fmt(levels[0]) if levels else "—"


def _gains_over_direct(paired_direct: pd.DataFrame) -> dict[str, dict]:
    """Per arm, how many nats per measure lower its test NLL is than the direct predictor's,
    paired by seed: −(arm − direct) with the interval flipped, so that positive means better,
    as for ``gain_vs_unigram``."""
    if paired_direct.empty:
        return {}
    rows = paired_direct[paired_direct["metric"] == COMPARISON_NLL]
    return {row["arm"]: dict(n=row["n"], mean=-row["mean_diff"], ci_low=-row["ci_high"], ci_high=-row["ci_low"])
            for _, row in rows.iterrows()}


def detectable_difference(n, std_diff) -> float:
    """The smallest difference the paired 95 % interval can tell from zero with ``n`` seeds: its
    half-width t(n)·sd/√n (an observed difference below it leaves 0 inside). NaN below 2 pairs."""
    return t_critical(int(n)) * float(std_diff) / math.sqrt(n) if n >= 2 else math.nan


def _detectable_note() -> str:
    """What the detectable-difference column means, and how more seeds shrink it (same spread)."""
    shrink = {n: detectable_difference(n, 1) / detectable_difference(3, 1) for n in (5, 10)}
    return ("*Smallest detectable difference*: the half-width of the paired 95 % interval, t·sd/√n of the "
            "per-seed differences. An observed difference smaller than it leaves 0 inside the interval, so a true "
            "difference below it cannot be told from zero with these seeds (one just at it is resolved only about "
            "half the time). For the same spread it shrinks as t/√n with more seeds: to "
            f"×{shrink[5]:.2f} of its 3-seed value with 5 seeds, ×{shrink[10]:.2f} with 10.")


def _few_seeds_note(status: pd.DataFrame, arms: list[str]) -> str | None:
    """Names the arms with fewer than :data:`MIN_BAND_SEEDS` finished seeds, whose bands the figures
    leave out, so that a missing band is not read as certainty."""
    if status.empty:
        return None
    done = status.loc[status["status"] == "done", "arm"].value_counts()
    few = [f"`{arm}` ({int(done.get(arm, 0))})" for arm in arms
           if arm in set(status["arm"]) and done.get(arm, 0) < MIN_BAND_SEEDS]
    if not few:
        return None
    return (f"Fewer than {MIN_BAND_SEEDS} finished seeds: {', '.join(few)}. Their intervals are not shown in the "
            f"figures (no band, no error bar): a t-interval from 2 seeds uses t = {t_critical(2):.1f} and says "
            "nothing, and so do the intervals of these arms in the tables. No band in any figure comes from fewer "
            f"than {MIN_BAND_SEEDS} values.")


def _beats(arm: str, baseline: str, gain) -> str:
    """One plain sentence on whether ``arm`` beats ``baseline``, judged by the 95 % interval over
    seeds of its NLL gain (positive: lower NLL than the baseline); no verdict from a mean alone."""
    amount = f"gain {_interval(gain)} nats per measure"
    if gain["ci_low"] > 0:
        return f"`{arm}` beats the {baseline} ({amount})."
    if gain["ci_high"] < 0:
        return f"`{arm}` does not beat the {baseline} ({amount})."
    n = int(gain["n"])
    why = "no interval" if pd.isna(gain["ci_low"]) else "the interval straddles 0"
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    return f"`{arm}`: cannot tell with {seeds} whether it beats the {baseline} ({amount}; {why})."


def _figure_lines(grid_dir: Path, paths: list[Path]) -> list[str]:
    """Markdown link and inline image of each figure, relative to the report."""
    lines = []
    for path in paths:
        relative = path.relative_to(grid_dir).as_posix()
        lines += [f"- [{path.stem}]({relative})", "", f"  ![{path.stem}]({relative})", ""]
    return lines


LEARN_INTRO = (
    f"Test NLL: importance-weighted negative log-likelihood of the next measure in nats per target measure "
    f"(lower is better; checkpoints are selected on `{VAL_NLL}`), mean over seeds [95 % t-interval]. The "
    f"{UNIGRAM} predicts each token from its voice and step in the measure alone, counted on the training split; "
    f"it is the same for every run on the same data. *Beats the unigram by*: unigram NLL − arm NLL "
    f"(`{GAIN_VS_UNIGRAM}`), mean over seeds [95 % t-interval over seeds]. *Beats the direct predictor by*: "
    f"`{DIRECT_ARM}` NLL − arm NLL, paired by seed ([paired_direct.csv](paired_direct.csv)); `{DIRECT_ARM}` is "
    "trained like the arms but has no latent variables. An arm beats a baseline when the whole interval lies "
    "above 0.")


def _learn_table(indexed: pd.DataFrame, final: pd.DataFrame, shown: list[str], gains: dict[str, dict]) -> list[str]:
    """One row per arm (test NLL, accuracies, gains over each baseline) and the unigram's row."""
    lines = ["| arm | test NLL [95 % CI] | test acc | test onset acc | beats the unigram by | "
             "beats the direct predictor by |", "|---|---|---|---|---|---|"]
    for arm in shown:
        cells = [_summary_cell(indexed, arm, metric) for metric in LEARN_METRICS]
        cells += [_interval(over[arm]) if arm in over else "—" for over in gains.values()]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    unigram = [_unigram_cell(final, metric) for metric in LEARN_METRICS.values()]
    return lines + [f"| {UNIGRAM} | " + " | ".join(unigram) + " | — | — |"]


def learn_section(grid_dir: Path, tables: dict[str, pd.DataFrame], arms: list[str],
                  figures: list[Path]) -> list[str]:
    """The report's opening: does each arm predict the next measure better than the positional
    unigram (no context) and than the direct predictor (no latents)? An arm that beats neither
    has learnt nothing the ablation's other comparisons could be about."""
    summary = tables["summary"]
    lines = ["## Does the model learn?", "", LEARN_INTRO, ""]
    indexed = summary.set_index(["arm", "metric"]) if not summary.empty else None
    shown = [arm for arm in arms if indexed is not None and any((arm, m) in indexed.index for m in LEARN_METRICS)]
    if not shown:
        return lines + [f"No test NLL yet (no finished runs, or runs evaluated before `{COMPARISON_NLL}` "
                        "existed).", ""] + _figure_lines(grid_dir, figures)
    gains = {UNIGRAM: {arm: indexed.loc[(arm, GAIN_VS_UNIGRAM)] for arm in shown
                       if (arm, GAIN_VS_UNIGRAM) in indexed.index},
             "direct predictor": _gains_over_direct(tables["paired_direct"])}
    lines += _learn_table(indexed, tables["final"], shown, gains) + [""]
    for arm in shown:
        sentences = [_beats(arm, baseline, over[arm]) for baseline, over in gains.items() if arm in over]
        lines.append("- " + (" ".join(sentences) or f"`{arm}`: no `{GAIN_VS_UNIGRAM}` in its runs."))
    return lines + [""] + _figure_lines(grid_dir, figures)


def _to_zero(final: pd.DataFrame, arm: str, zero: str | None, metric: str) -> dict | None:
    """``arm`` − ``zero`` on the raw values of ``metric``, paired by seed (None without pairs)."""
    if zero is None or arm == zero or final.empty:
        return None
    pairs = final[final["metric"] == metric].pivot_table(index="seed", columns="arm", values="value",
                                                         aggfunc="first").reindex(columns=[arm, zero]).dropna()
    return mean_interval((pairs[arm] - pairs[zero]).round(12)) if len(pairs) else None


def _moves(stats: dict, down: str, up: str, unit: str = "") -> str:
    """``"<down|up> |mean| [interval]<unit> (detectable | not detectable at n seeds)"``, interval made positive."""
    n, excludes, word = stats["n"], stats["n"] >= 2 and (stats["ci_low"] > 0 or stats["ci_high"] < 0), up
    if stats["mean"] < 0:
        stats, word = dict(n=n, mean=-stats["mean"], ci_low=-stats["ci_high"], ci_high=-stats["ci_low"]), down
    return f"{word} {_interval(stats)}{unit} ({'detectable' if excludes else f'not detectable at {int(n)} seeds'})"


def dose_section(grid_dir: Path, grid_name: str, tables: dict[str, pd.DataFrame], figure: Path | None) -> list[str]:
    """Per weight: gradient share, test NLL, the term's statistic and both paired against weight 0;
    then one sentence on what the largest weight does and what it costs."""
    term = DOSE_WEIGHTS[grid_name][0]
    statistic, ratio, final = DOSE_STATISTIC[term], GRADIENT_SHARE_RATIO[term], tables["final"]
    weights = dose_weights(grid_name)
    zero = next((arm for arm, weight in weights.items() if weight == 0), None)
    bach = final.loc[final["metric"] == reference_key(statistic), "value"].mean() if not final.empty else math.nan
    lines = ["## Dose response", "",
             f"Gradient share: weight × ‖∇{term}‖/‖∇ELBO‖ = weight × {ratio}, measured once by "
             "`benchmarks/music_loss_share.py` on one default-design `cpu`-profile checkpoint (an order of magnitude, "
             f"not a per-run measurement). `{statistic}`: latent-sampled continuations, held-out Bach {_fmt(bach)}. "
             "Mean over seeds [95 % t-interval]; differences are arm − weight 0 on the raw values, paired by seed.", "",
             f"| weight | gradient share | test NLL | {statistic} | NLL − weight 0 | {statistic} − weight 0 |",
             "|---|---|---|---|---|---|"]
    indexed = tables["summary"].set_index(["arm", "metric"]) if not tables["summary"].empty else None
    diffs = {arm: {m: _to_zero(final, arm, zero, m) for m in (COMPARISON_NLL, statistic)} for arm in weights}
    for arm, weight in weights.items():
        cells = [_summary_cell(indexed, arm, m) for m in (COMPARISON_NLL, statistic)]
        cells += [_interval(d) if d else "—" for d in diffs[arm].values()]
        lines.append(f"| {weight:g} (`{arm}`) | {100 * weight * ratio:.3g} % | " + " | ".join(cells) + " |")
    missing = [f"`{name}`" for name in [*weights, COMPARISON_NLL, statistic]
               if name not in {*final.get("arm", ()), *final.get("metric", ())}]
    if missing:
        lines += ["", "Missing (no finished runs or not in their test metrics): " + ", ".join(missing) + "."]
    top = next((arm for arm in reversed(weights) if all(diffs[arm].values())), None)
    lines += ["", "No paired comparison of a weight with weight 0 yet." if top is None else
              f"The largest weight with results ({weights[top]:g}) "
              f"{_moves(diffs[top][statistic], f'lowers `{statistic}` by', f'raises `{statistic}` by')} at "
              f"{_moves(diffs[top][COMPARISON_NLL], 'a gain of', 'a cost of', ' nats of test NLL')}."]
    return lines + [""] + _figure_lines(grid_dir, [figure] if figure else [])


# The metrics a thesis claim is judged on, fixed before looking: the next-measure NLL, greedy and
# onset accuracy, and the musical statistics of greedy and latent-sampled continuations. Judging on
# every logged metric (dozens) would let one of them separate by chance at 95 %.
CLAIM_METRICS = ("test/nll", "test/acc", "test/acc_onsets", *(f"{mode}/{statistic}" for mode in ("greedy", "latent")
                 for statistic in ("repeat_rate", "distinct_pitches_per_voice", "note_length_entropy",
                                   "dissonance_rate", "pitch_class_distance")))


def _with_minus_without(final: pd.DataFrame, with_arm: str, without_arm: str) -> dict[str, tuple]:
    """Claim metric → (direction, with − without paired by seed): :func:`ablations.aggregate.paired_table`
    with ``without_arm`` as the reference (a ``closer`` metric compared by distance to Bach, as everywhere)."""
    pairs = paired_table(final[final["arm"].isin([with_arm, without_arm])], without_arm)  # in the runs' metric order
    pairs = pairs[(pairs["arm"] == with_arm) & (pairs["direction"] != "none") & pairs["metric"].isin(CLAIM_METRICS)]
    return {row.metric: (row.direction, dict(n=int(row.n), mean=row.mean_diff, std=row.std_diff,
                                             ci_low=row.ci_low, ci_high=row.ci_high))
            for row in pairs.itertuples()}


def _claim_sentence(claim: str, with_arm: str, without_arm: str, tables: dict[str, pd.DataFrame]) -> str:
    """The claim, the metrics on which the two arms separate (which arm is better, with − without [95 % CI]) and
    the verdict: against (with better somewhere, not worse on test NLL), consistent, or mixed."""
    start = f"The thesis concluded that {claim}."
    missing = [f"`{arm}`" for arm in (with_arm, without_arm) if arm not in set(tables["final"].get("arm", ()))]
    if missing:
        return f"{start} Not checked here: no finished runs of {' and '.join(missing)}."
    diffs = _with_minus_without(tables["final"], with_arm, without_arm)
    n = max((int(stats["n"]) for _, stats in diffs.values()), default=0)
    if not diffs:
        return f"{start} Not checked here: `{with_arm}` and `{without_arm}` share no judged test metric."
    if n < 2:
        return f"{start} This grid cannot judge it: {n} paired seed of `{with_arm}` and `{without_arm}` (2 needed)."
    ways = {with_arm: [], without_arm: []}
    for metric, (direction, stats) in diffs.items():
        if stats["n"] >= 2 and (stats["ci_low"] > 0 or stats["ci_high"] < 0):
            better = with_arm if (stats["mean"] > 0) == (direction == "higher") else without_arm
            ways[better].append((metric, f"`{metric}` ({DIRECTION_WORDS[direction]}) {_interval(stats)}"))
    evidence = (f"{start} Here (`{with_arm}` − `{without_arm}`, paired by seed, {n} seeds, "
                f"{len(diffs)} judged metrics): "
                + "; ".join(f"`{arm}` is better on " + ", ".join(text for _, text in found)
                            for arm, found in ways.items() if found))
    if not ways[with_arm] and not ways[without_arm]:
        nll = diffs.get(COMPARISON_NLL)
        seen = (f"the smallest `{COMPARISON_NLL}` difference it could have seen is "
                f"{_fmt(detectable_difference(nll[1]['n'], nll[1]['std']))} nats" if nll and nll[1]["n"] >= 2
                else f"no `{COMPARISON_NLL}` says how large a difference it could have seen")
        return f"{evidence}no judged metric separates the arms: consistent with it ({seen})."
    if not ways[with_arm]:
        return f"{evidence} — consistent with it (`{without_arm}` is better wherever the arms separate)."
    if COMPARISON_NLL in dict(ways[without_arm]):
        return f"{evidence} — mixed (`{with_arm}` is better on some metrics but worse on `{COMPARISON_NLL}`)."
    return f"{evidence} — evidence against the thesis's conclusion."


def thesis_section(name: str, grid: dict, tables: dict[str, pd.DataFrame]) -> list[str]:
    """One sentence per thesis claim the grid can test (:data:`THESIS_CONCLUSIONS`; in ``all``, every claim whose
    arms it has, the arm with the feature merged into ``baseline`` where it equals it)."""
    lines, claims = ["## What the thesis concluded, and the evidence here", ""], []
    arms = set(_arm_order(grid, tables["final"]))
    for grid_name, (claim, with_arm, without_arm) in THESIS_CONCLUSIONS.items():
        with_arm = BASELINE_ARM if name == "all" and with_arm not in arms else with_arm
        if grid_name == name or (name == "all" and {with_arm, without_arm} <= arms):
            claims.append((claim, with_arm, without_arm))
    if not claims:
        polled = " (it compared its arms in listener polls only)" if name in POLLED_ONLY else ""
        return lines + [f"The thesis stated no conclusion for `{name}`{polled}: there is no claim to check here."]
    lines += ["Its slides conclude: \"The different loss functions and the RPoE layer don't help the training.\" "
              f"Each claim is checked on {len(CLAIM_METRICS)} metrics fixed in advance (NLL, accuracy, onset "
              "accuracy, and the musical statistics of greedy and latent-sampled continuations; at 95 % about one "
              "in twenty separates by chance alone, so one separation on its own is weak evidence): "
              "the arm with the feature − the arm without it, "
              "paired by seed, 95 % t-interval (for a metric judged by closeness to Bach, of the distances to Bach). "
              "The arms separate on a metric when its interval excludes 0. *Evidence against* the thesis: the arm "
              f"with the feature is better on some metric and not worse on `{COMPARISON_NLL}`.", ""]
    return lines + ["- " + _claim_sentence(*claim, tables) for claim in claims]


def write_report(grid_dir: Path, tables: dict[str, pd.DataFrame], figures: list[Path],
                 samples: dict[str, dict[str, str]], learn_figures: list[Path] = (),
                 dose_figure: Path | None = None) -> Path:
    """``report.md``: whether the arms learn at all first, then how they compare, figures, samples, runs.

    Args:
        figures: listed under "Figures".
        learn_figures: shown in the opening "Does the model learn?" section instead.
    """
    grid = read_grid(grid_dir)
    name = grid.get("grid", grid_dir.name)
    reference = grid.get("reference", "baseline")
    status, summary, paired = tables["status"], tables["summary"], tables["paired"]
    arms = _arm_order(grid, status, summary)
    counts = status["status"].value_counts().to_dict() if not status.empty else {}
    seeds_per_arm = int(summary["n"].max()) if not summary.empty else 0
    lines = [f"# Ablation `{name}`", "",
             f"Profile `{grid.get('profile', '?')}`, grid version {grid.get('grid_version', '?')}; "
             f"reference arm `{reference}`. Runs: " +
             (", ".join(f"{count} {state}" for state, count in counts.items()) or "none") + ".", ""]
    lines += learn_section(grid_dir, tables, arms, list(learn_figures))
    lines += [""] + thesis_section(name, grid, tables)
    lines += ["", "## Arms", "", "| arm | overrides |", "|---|---|"]
    for arm in arms:
        overrides = grid.get("arms", {}).get(arm, {}).get("overrides", {})
        lines.append(f"| `{arm}` | {', '.join(f'`{k}={v}`' for k, v in overrides.items()) or '(the baseline)'} |")

    t3 = t_critical(3)
    lines += ["", "## How sure is this?", "",
              f"Every arm ran the same seeds on the same data split with the same training budget. Intervals are "
              f"95 % Student-t intervals over seeds, and arms are compared *paired by seed* (arm − `{reference}`). "
              f"With 3 seeds a t-interval has 2 degrees of freedom, t = {t3:.2f}: the interval is wide and only "
              f"large effects exclude zero. `--seeds N` raises the number of seeds "
              f"(5 seeds: t = {t_critical(5):.2f}; 10 seeds: t = {t_critical(10):.2f}). "
              "Three values are not bootstrapped; the bands in the figures are the same t-intervals, cut at the "
              "values a metric can take (a share at 0 and 1, an NLL, KL or count at 0)."]
    if seeds_per_arm:
        lines.append(f"\nThis report has up to {seeds_per_arm} finished seed(s) per arm"
                     + (f" (t = {t_critical(seeds_per_arm):.2f})." if seeds_per_arm >= 2 else "."))
    few_seeds = _few_seeds_note(status, arms)
    if few_seeds:
        lines += ["", few_seeds]

    if name in DOSE_WEIGHTS:
        lines += [""] + dose_section(grid_dir, name, tables, dose_figure)

    lines += ["", f"## Which arm is better (test split, vs `{reference}`)", ""]
    if paired.empty:
        lines.append("No paired comparison yet (the reference arm or other arms have no finished runs).")
    else:
        lines += ["| metric | better is | arm | reference mean [95 % CI] | arm mean [95 % CI] | "
                  "difference arm − ref [95 % CI] | smallest detectable difference | excludes 0 | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        indexed = summary.set_index(["arm", "metric"]) if not summary.empty else None
        descriptive = sorted(set(paired.loc[paired["direction"] == "none", "metric"]))
        for _, row in paired[paired["direction"] != "none"].iterrows():
            ref_stats = _summary_cell(indexed, reference, row["metric"])
            arm_stats = _summary_cell(indexed, row["arm"], row["metric"])
            compared = "" if row["compared"] == "value" else f" of {row['compared']}"
            difference = (f"{_fmt(row['mean_diff'])}{compared} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
                          if not pd.isna(row["ci_low"]) else f"{_fmt(row['mean_diff'])}{compared} (n={int(row['n'])})")
            lines.append(f"| {row['metric']} | {DIRECTION_WORDS.get(row['direction'], row['direction'])} | "
                         f"`{row['arm']}` | {ref_stats} | {arm_stats} | {difference} | "
                         f"{_fmt(detectable_difference(row['n'], row['std_diff']))} | "
                         f"{'yes' if row['excludes_zero'] else 'no'} | {_verdict(row)} |")
        lines += ["", _detectable_note()]

        if descriptive:
            lines += ["", "Shown in the tables but not judged (no better direction, or no Bach value to be closer "
                      "to): " + ", ".join(f"`{m}`" for m in descriptive) + "."]

    music = _music_table(summary, arms)
    if music:
        lines += ["", "## Musical statistics against held-out Bach", "",
                  "Mean over seeds [95 % t-interval]; the closer to the Bach column, the better.", ""] + music

    lines += ["", "## Figures", ""] + _figure_lines(grid_dir, figures)
    if not figures:
        lines.append("No figures yet (no finished runs).")

    lines += ["", "## Samples (one per arm, lowest finished seed)", "",
              f"WAV: the MIDI rendered with sine waves (no soundfont), first {WAV_SECONDS:.0f} s.", ""]
    for arm in arms:
        files = samples.get(arm)
        if not files:
            continue
        links = [f"[{label}]({files[key]})" for key, label in (("mid", "MIDI"), ("wav", "WAV"), ("png", "PNG"))
                 if key in files]
        if "unreadable" in files:
            links.insert(1, f"MIDI unreadable, no WAV ({files['unreadable']})")
        lines.append(f"- `{arm}`: {', '.join(links)}")
        if "png" in files:
            lines += ["", f"  ![{arm}]({files['png']})", ""]
    if not samples:
        lines.append("No samples yet.")

    lines += ["", "## Failed runs", ""]
    failed = status[status["status"] == "failed"] if not status.empty else status
    if failed.empty:
        lines.append("None.")
    for _, row in failed.iterrows():
        lines.append(f"- `{row['run_id']}` ({row['arm']}, seed {row['seed']}): {row['reason']}")
    unfinished = status[status["status"].isin(["pending", "interrupted"])] if not status.empty else status
    if not unfinished.empty:
        lines += ["", f"{len(unfinished)} run(s) not finished: rerun the same command to resume them."]

    lines += ["", "## Runs", "", "| arm | seed | run id | status | W&B run id | steps | train s | eval s |",
              "|---|---|---|---|---|---|---|---|"]
    for _, row in status.iterrows():
        lines.append(f"| `{row['arm']}` | {row['seed']} | [`{row['run_id']}`](runs/{row['run_id']}/) | {row['status']} | "
                     f"{'' if pd.isna(row['wandb_run_id']) else row['wandb_run_id']} | {_fmt(row['steps'], 6)} | "
                     f"{_fmt(row['train_seconds'], 3)} | {_fmt(row['eval_seconds'], 3)} |")
    finished = status[status["status"] == "done"] if not status.empty else status
    if not finished.empty:
        lines += ["", f"Time of the {len(finished)} finished runs: training {finished['train_seconds'].sum():.0f} s, "
                  f"evaluation {finished['eval_seconds'].sum():.0f} s in total (per run, summed; runs in "
                  "parallel overlap, and a resumed run counts only its last session)."]
    lines += ["", "Tables: [runs.csv](runs.csv) (every run × step × metric), [final.csv](final.csv), "
              "[summary.csv](summary.csv), [paired.csv](paired.csv), [paired_direct.csv](paired_direct.csv), "
              "[status.csv](status.csv).", ""]
    path = grid_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _summary_cell(indexed, arm: str, metric: str) -> str:
    if indexed is None or (arm, metric) not in indexed.index:
        return "—"
    return _interval(indexed.loc[(arm, metric)])


def _music_table(summary: pd.DataFrame, arms: list[str]) -> list[str]:
    metrics = _music_metrics(summary)
    if not metrics:
        return []
    indexed = summary.set_index(["arm", "metric"])
    shown = [a for a in arms if a in set(summary["arm"])]
    lines = ["| statistic | Bach | " + " | ".join(f"`{a}`" for a in shown) + " |", "|---" * (len(shown) + 2) + "|"]
    for metric in metrics:
        bach = summary.loc[summary["metric"] == reference_key(metric), "mean"].mean()
        cells = [_summary_cell(indexed, arm, metric) for arm in shown]
        lines.append(f"| {metric} | {_fmt(bach)} | " + " | ".join(cells) + " |")
    return lines


def build(grid_dir: Path, refresh: bool = False) -> Path:
    """Write the figures, samples and ``report.md`` of ``grid_dir``; returns the report's path."""
    grid_dir = Path(grid_dir)
    tables = load_tables(grid_dir, refresh)
    grid = read_grid(grid_dir)
    arms = _arm_order(grid, tables["status"], tables["summary"])
    sns.set_theme(style="whitegrid")
    folder = grid_dir / "figures"
    learn_figures = [p for p in (plot_nll_vs_unigram(tables["runs"], tables["final"], arms, folder),
                                 plot_collapse(tables["runs"], arms, folder)) if p is not None]
    figures = plot_learning_curves(tables["runs"], arms, folder)
    figures += [p for p in (plot_final_metrics(tables["final"], arms, folder),
                            plot_music_stats(tables["final"], arms, folder)) if p is not None]
    grid_name = grid.get("grid", grid_dir.name)
    term = DOSE_WEIGHTS.get(grid_name, (None,))[0]
    dose_figure = plot_dose_response(tables["final"], term, dose_weights(grid_name), folder) if term else None
    samples = copy_samples(grid_dir, tables["status"], arms)
    return write_report(grid_dir, tables, figures, samples, learn_figures, dose_figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reports/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, help="grid name (a folder of --out)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output root (default reports/)")
    parser.add_argument("--aggregate", action="store_true", help="rebuild the tables from the run folders first")
    args = parser.parse_args(argv)
    grid_dir = args.out / args.grid
    if not (grid_dir / "grid.json").exists() and not (grid_dir / "runs").is_dir():
        grids = sorted(p.name for p in args.out.glob("*/") if (p / "grid.json").exists()) if args.out.is_dir() else []
        print(f"reports/build.py: error: no grid in {grid_dir}; grids under {args.out}: {', '.join(grids) or 'none'}",
              file=sys.stderr)
        return 2
    path = build(grid_dir, refresh=args.aggregate)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
