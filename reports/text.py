"""The report's Markdown pieces: numbers, intervals, verdicts and sentences that several sections use."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from reports.tables import MIN_BAND_SEEDS, levels
from rmvae.intervals import t_critical

DIRECTION_WORDS = {"higher": "higher", "lower": "lower", "closer": "closer to Bach", "none": "—"}


def fmt(value, digits: int = 4) -> str:
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.{digits}g}"


def interval(row) -> str:
    if pd.isna(row["ci_low"]):
        return f"{fmt(row['mean'])} (n={int(row['n'])})"
    return f"{fmt(row['mean'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def verdict(row) -> str:
    if row["direction"] == "none" or not row["better"]:
        return "no direction (descriptive)"
    if row["better"] == "tie":
        return "tie"
    if row["excludes_zero"]:
        return f"**{row['better']}** better; interval excludes 0"
    return f"{row['better']} by the mean only; interval includes 0 (not resolved)"


def summary_cell(indexed, arm: str, metric: str) -> str:
    if indexed is None or (arm, metric) not in indexed.index:
        return "—"
    return interval(indexed.loc[(arm, metric)])


def unigram_cell(final: pd.DataFrame, metric: str) -> str:
    """The positional unigram's value of a metric; a range where arms' data settings differ."""
    found = levels(final, metric)
    if len(found) > 1:
        return f"{fmt(found[0])} – {fmt(found[-1])} (differs by data setting)"
    return fmt(found[0]) if found else "—"


def detectable_difference(n, std_diff) -> float:
    """The smallest difference the paired 95 % interval can tell from zero with ``n`` seeds: its
    half-width t(n)·sd/√n (an observed difference below it leaves 0 inside). NaN below 2 pairs."""
    return t_critical(int(n)) * float(std_diff) / math.sqrt(n) if n >= 2 else math.nan


def detectable_note() -> str:
    """What the detectable-difference column means, and how more seeds shrink it (same spread)."""
    shrink = {n: detectable_difference(n, 1) / detectable_difference(3, 1) for n in (5, 10)}
    return ("*Smallest detectable difference*: the half-width of the paired 95 % interval, t·sd/√n of the "
            "per-seed differences. An observed difference smaller than it leaves 0 inside the interval, so a true "
            "difference below it cannot be told from zero with these seeds (one just at it is resolved only about "
            "half the time). For the same spread it shrinks as t/√n with more seeds: to "
            f"×{shrink[5]:.2f} of its 3-seed value with 5 seeds, ×{shrink[10]:.2f} with 10.")


def few_seeds_note(status: pd.DataFrame, arms: list[str]) -> str | None:
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


def beats(arm: str, baseline: str, gain) -> str:
    """One plain sentence on whether ``arm`` beats ``baseline``, judged by the 95 % interval over
    seeds of its NLL gain (positive: lower NLL than the baseline); no verdict from a mean alone."""
    amount = f"gain {interval(gain)} nats per measure"
    if gain["ci_low"] > 0:
        return f"`{arm}` beats the {baseline} ({amount})."
    if gain["ci_high"] < 0:
        return f"`{arm}` does not beat the {baseline} ({amount})."
    n = int(gain["n"])
    why = "no interval" if pd.isna(gain["ci_low"]) else "the interval straddles 0"
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    return f"`{arm}`: cannot tell with {seeds} whether it beats the {baseline} ({amount}; {why})."


def figure_lines(grid_dir: Path, paths: list[Path]) -> list[str]:
    """Markdown link and inline image of each figure, relative to the report."""
    lines = []
    for path in paths:
        relative = path.relative_to(grid_dir).as_posix()
        lines += [f"- [{path.stem}]({relative})", "", f"  ![{path.stem}]({relative})", ""]
    return lines
