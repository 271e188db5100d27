"""The figures of a report (``OUT/<grid>/figures/*.png``): curves, point plots and the dose response.

Every interval drawn is the 95 % Student-t interval over seeds (:func:`band`), cut at the values a
metric can take; none is drawn from fewer than :data:`reports.tables.MIN_BAND_SEEDS` values.
"""
from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablations.aggregate import metric_direction, reference_key, t_errorbar  # noqa: E402
from reports.tables import (COMPARISON_NLL, DOSE_STATISTIC, LEARN_METRICS, MIN_BAND_SEEDS, UNIGRAM,  # noqa: E402
                            VAL_NLL, levels, music_metrics)

# Learning curves: one figure per quantity, one panel per stage (train, val), arms as hues.
CURVES = {"loss": "loss", "kl": "kl", "accuracy": "acc", "harmony": "harmony"}
COLLAPSE_CURVES = ("val/active_units", "val/kl_inputs")
# Values a metric can take, on its last name part without _step/_epoch/_ci_low/_ci_high; first match
# wins (fnmatch); None: unbounded on that side. A t band past a bound would show impossible values.
VALID_RANGES = {
    "gain_vs_*": (None, None),  # a difference of NLLs: either sign
    "*acc*": (0.0, 1.0), "*rate*": (0.0, 1.0), "pitch_class_distance": (0.0, 1.0),  # shares; total variation
    "kl*": (0.0, None), "*nll": (0.0, None), "recon*": (0.0, None), "*entropy": (0.0, None),
    "distinct_pitches*": (0.0, None), "active_units": (0.0, None), "onsets_per_measure": (0.0, None),
    "out_of_range_share": (0.0, 1.0), "parallel_perfects_per_note": (0.0, None),  # a share; a count per note
}


def use_theme() -> None:
    """The look of every figure: seaborn's white grid."""
    sns.set_theme(style="whitegrid")


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


def plot_nll_vs_unigram(runs: pd.DataFrame, final: pd.DataFrame, arms: list[str], folder: Path) -> Path | None:
    """``val/nll`` per arm over training against the positional unigram's test NLL (dashed): a curve
    that stays above the line has learnt less than counting notes per position in the measure."""
    metrics = _logged(runs, [VAL_NLL])
    if not metrics:
        return None
    figure, (axis,) = _curve_figure(runs, arms, metrics, ylabel="nats per target measure")
    for index, level in enumerate(levels(final, LEARN_METRICS[COMPARISON_NLL])):
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


def plot_music_stats(final: pd.DataFrame, arms: list[str], folder: Path) -> Path | None:
    """Musical statistics of each arm beside the Bach reference (dashed line)."""
    metrics = music_metrics(final)
    return _point_panels(final, arms, metrics, "musical statistics per arm (95 % t-interval) against held-out "
                         "Bach (dashed)", folder / "music_stats.png", bach=True) if metrics else None


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
