"""What a report reads: the saved tables of a grid, the metrics it shows, and the arms' order.

Shared by :mod:`reports.figures`, :mod:`reports.text` and :mod:`reports.sections`; no plotting here.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablations.aggregate import BASELINE_TABLES, aggregate, baseline_tables, metric_direction, reference_key
from ablations.grids import DOSE_WEIGHTS, dose_arm

TABLES = ("runs", "final", "summary", "paired", "paired_direct", "status")
# Tables newer than some grid folders: derived from final.csv where missing, so that a report of an
# older folder (tables only, no run folders) is rebuilt without aggregating its runs again.
DERIVED_TABLES = tuple(name for name in BASELINE_TABLES if name not in TABLES)
# "Does the model learn?": each arm's test metric beside the positional unigram's on the same split.
LEARN_METRICS = {"test/nll": "test/unigram_nll", "test/acc": "test/unigram_acc",
                 "test/acc_onsets": "test/unigram_acc_onsets"}
COMPARISON_NLL = "test/nll"  # the comparison metric (checkpoints are selected on val/nll)
GAIN_VS_UNIGRAM = "test/gain_vs_unigram"  # unigram NLL − arm NLL, per run
UNIGRAM = "positional unigram"
VAL_NLL = "val/nll"
MIN_BAND_SEEDS = 3  # a t-interval from 2 values uses t(1) = 12.7 and says nothing: none is drawn
# The musical statistic of latent-sampled continuations each term should move (compared with bach/<name>).
DOSE_STATISTIC = {"harmony": "latent/dissonance_rate", "scale": "latent/pitch_class_distance"}


def load_tables(grid_dir: Path, refresh: bool = False) -> dict[str, pd.DataFrame]:
    """The saved tables of a grid; aggregates the run folders first if a table is missing."""
    grid_dir = Path(grid_dir)
    if refresh or not all((grid_dir / f"{name}.csv").exists() for name in TABLES):
        aggregate(grid_dir)
    tables = {name: _read_table(grid_dir / f"{name}.csv") for name in TABLES}
    derived = baseline_tables(tables["final"]) if not tables["final"].empty else {}
    for name in DERIVED_TABLES:
        path = grid_dir / f"{name}.csv"
        tables[name] = _read_table(path) if path.exists() else derived.get(name, pd.DataFrame())
    return tables


def _read_table(path: Path) -> pd.DataFrame:
    """A saved table; an empty one (no header, as some older folders have) as an empty frame."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def arm_order(grid: dict, *frames: pd.DataFrame) -> list[str]:
    arms = list(grid.get("arm_order") or grid.get("arms", {}))
    for frame in frames:
        if "arm" in frame:
            arms += [arm for arm in dict.fromkeys(frame["arm"].dropna()) if arm not in arms]
    return arms


def levels(final: pd.DataFrame, metric: str) -> list[float]:
    """The distinct values of a metric over runs: one for the unigram, unless arms differ in their
    data (e.g. transposed vs raw pieces), where each data setting has its own unigram."""
    if final.empty:
        return []
    values = final.loc[final["metric"] == metric, "value"].dropna()
    return sorted(set(values.round(6)))


def music_metrics(frame: pd.DataFrame) -> list[str]:
    """The musical statistics of a table that have a Bach value to be compared with."""
    present = set(frame.get("metric", ()))
    return [m for m in dict.fromkeys(frame.get("metric", ())) if metric_direction(m) == "closer"
            and reference_key(m) in present]


def dose_weights(grid_name: str) -> dict[str, float]:
    """arm → weight of a dose-response grid, ascending (:data:`ablations.grids.DOSE_WEIGHTS`)."""
    term, weights = DOSE_WEIGHTS[grid_name]
    return {dose_arm(term, weight): weight for weight in sorted(weights)}
