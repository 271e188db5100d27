"""Tables of a grid from its run folders, with Student-t intervals (docs/design.md §7.3). No torch.

Writes into ``OUT/<grid>/``:

- ``runs.csv``: every run × logged row × metric (run_id, grid, arm, seed, epoch, step,
  metric, value), from each run's Lightning ``metrics.csv`` (NaN cells dropped);
- ``final.csv``: one row per finished run × test metric (``test_metrics.json``);
- ``summary.csv``: per arm × metric: n, mean, std, ci_low, ci_high (95 %, Student t);
- ``paired.csv``: each arm minus the reference arm, paired by seed, with its t-interval,
  whether it excludes zero, and which arm is better given :data:`METRIC_DIRECTIONS`;
- ``paired_direct.csv``: the same for each other arm minus the direct predictor
  (:data:`ablations.grids.DIRECT_ARM`, no latents) on :data:`DIRECT_METRICS`: do the latents
  help at all? Only the header if the grid has no direct-predictor runs;
- ``paired_autoregressive.csv``: the same against the autoregressive baseline
  (:data:`ablations.grids.AUTOREGRESSIVE_ARM`, an LSTM over the window's tokens, no latent): does
  the model beat what a user of the field would train instead?
- ``status.csv``: every run's status (done / failed / interrupted / pending), failure
  reason, W&B run id and timings.

With n seeds the interval uses n − 1 degrees of freedom: for 3 seeds t = 4.30, so the
interval is wide; more seeds (``--seeds``) narrow it. Three values are not bootstrapped.

Usage: ``python -m ablations.aggregate --grid harmony --out reports/`` (or ``python ablations/aggregate.py``).
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ablations import runfolder
from ablations.grids import AUTOREGRESSIVE_ARM, DIRECT_ARM
from ablations.runfolder import read_grid, read_json, run_folders
from rmvae.files import atomic_write_csv
from rmvae.intervals import mean_ci, t_critical

CONFIDENCE = 0.95
BACH_PREFIX = "bach/"

# Which direction of each metric is better; first matching pattern wins (fnmatch).
#   higher / lower: the raw value; closer: the distance to the real-music reference
#   ``bach/<name>`` of the same run (the held-out Bach value); none: descriptive only.
METRIC_DIRECTIONS: dict[str, str] = {
    "bach/*": "none",  # the reference itself
    "*_ci_low": "none",  # within-run intervals of the evaluator (over pieces): not compared
    "*_ci_high": "none",
    "continuations": "none",  # how many pieces were long enough to continue
    "*/baseline_*": "none",  # trivial baselines (always hold, repeat last measure): same for all arms
    "*/unigram_*": "none",  # the positional unigram on the grid's split: same for all arms
    "*/gain_vs_*": "higher",  # baseline NLL − model NLL (nats per measure)
    # Latent diagnostics: few active units or a small KL can mean posterior collapse, but
    # neither is better in itself; before `*/acc*` and `*/nll` so that no general pattern claims them.
    "*/active_units": "none",
    "*/kl_*": "none",
    "*/recon_full_term": "none",
    "*/acc*": "higher",  # share of correctly decoded steps (all, onsets, pitches, fill, per voice)
    # single-sample NLL of the target predicted from the past (z drawn once; val/nll selects best.ckpt)
    "*/recon_nll": "lower",
    "*/recon_inputs": "lower",
    "*/recon": "lower",
    "*/nll": "lower",
    "*/elbo": "higher",
    # Objective terms that some arms optimise and others do not: comparing them across arms
    # would be circular, so they are shown but not judged.
    "*/loss": "none",
    "*/kl": "none",  # a low KL can also mean posterior collapse
    "*/beta": "none",
    "*/scale": "none",
    "*/rhythm": "none",
    "*/harmony*": "closer",  # judged against Bach when the evaluator reports bach/harmony, else none
    # Musical statistics of generated continuations (docs/design.md §4.5): closer to held-out Bach is better,
    # including the pitch-class distance to the seed (Bach's own continuation is not at 0).
    "greedy/*": "closer",
    "latent/*": "closer",  # latent sampled from its predicted Gaussian, greedy tokens
    "sampled/*": "closer",
}

# What ``paired_direct.csv`` and ``paired_autoregressive.csv`` compare: the next-measure NLL (the
# comparison metric) and accuracies.
DIRECT_METRICS = ("test/nll", "test/acc", "test/acc_onsets")
COMPARISON_NLL = DIRECT_METRICS[0]
# Table name → the trained baseline every other arm is paired with in it, on DIRECT_METRICS.
BASELINE_TABLES = {"paired_direct": DIRECT_ARM, "paired_autoregressive": AUTOREGRESSIVE_ARM}

RUNS_COLUMNS = ["run_id", "grid", "arm", "seed", "epoch", "step", "metric", "value"]
FINAL_COLUMNS = ["run_id", "grid", "arm", "seed", "metric", "value"]
SUMMARY_COLUMNS = ["arm", "metric", "n", "mean", "std", "ci_low", "ci_high"]
PAIRED_COLUMNS = ["arm", "reference", "metric", "direction", "compared", "n", "mean_diff", "std_diff", "t",
                  "ci_low", "ci_high", "excludes_zero", "better"]
STATUS_COLUMNS = ["run_id", "grid", "arm", "seed", "status", "reason", "wandb_run_id", "steps",
                  "train_seconds", "eval_seconds"]


# ---------------------------------------------------------------- intervals


def mean_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """n, mean, sample std and the Student-t interval mean ± t·std/√n (NaN below 2 values)."""
    array = np.asarray([v for v in values if not pd.isna(v)], dtype=float)
    mean, low, high = mean_ci(array, confidence)
    std = float(array.std(ddof=1)) if len(array) >= 2 else math.nan
    return dict(n=len(array), mean=mean, std=std, ci_low=low, ci_high=high)


def t_errorbar(values) -> tuple[float, float]:
    """Seaborn ``errorbar=`` callable: the 95 % Student-t interval (no bootstrap)."""
    stats = mean_interval(values)
    if stats["n"] < 2:
        return stats["mean"], stats["mean"]
    return stats["ci_low"], stats["ci_high"]


def metric_direction(metric: str) -> str:
    """``higher``, ``lower``, ``closer`` (to ``bach/…``) or ``none``, from :data:`METRIC_DIRECTIONS`."""
    for pattern, direction in METRIC_DIRECTIONS.items():
        if fnmatch.fnmatchcase(metric, pattern):
            return direction
    return "none"


def reference_key(metric: str) -> str:
    """The Bach reference of a metric: ``greedy/repeat_rate`` → ``bach/repeat_rate``."""
    return BACH_PREFIX + metric.split("/", 1)[-1]


# ---------------------------------------------------------------- reading run folders (ablations.runfolder)


def status_table(grid_dir: Path) -> pd.DataFrame:
    rows = []
    for run_dir, meta in run_folders(grid_dir):
        status, reason = runfolder.status(run_dir)
        result = read_json(run_dir / runfolder.RESULT) or read_json(run_dir / runfolder.TRAIN_RESULT)
        rows.append(dict(run_id=meta.get("run_id", run_dir.name), grid=meta.get("grid"), arm=meta.get("arm"),
                         seed=meta.get("seed"), status=status, reason=reason,
                         wandb_run_id=result.get("wandb_run_id"), steps=result.get("steps"),
                         train_seconds=result.get("train_seconds"), eval_seconds=result.get("eval_seconds")))
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def runs_table(grid_dir: Path) -> pd.DataFrame:
    """Every run × logged row × metric, long format, from each run's ``metrics.csv``."""
    parts = []
    for run_dir, meta in run_folders(grid_dir):
        path = run_dir / runfolder.METRICS_CSV
        if not path.exists():
            continue
        try:
            wide = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        for column in ("epoch", "step"):
            if column not in wide:
                wide[column] = np.nan
        long = wide.melt(id_vars=["epoch", "step"], var_name="metric", value_name="value").dropna(subset=["value"])
        long = long.assign(run_id=meta.get("run_id", run_dir.name), grid=meta.get("grid"), arm=meta.get("arm"),
                           seed=meta.get("seed"))
        parts.append(long[RUNS_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=RUNS_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table["epoch"] = table["epoch"].astype("Int64")
    table["step"] = table["step"].astype("Int64")
    return table


def final_table(grid_dir: Path) -> pd.DataFrame:
    """One row per finished run × test metric."""
    rows = []
    for run_dir, meta in run_folders(grid_dir):
        if not runfolder.is_done(run_dir):
            continue
        for metric, value in sorted(read_json(run_dir / runfolder.TEST_METRICS).items()):
            rows.append(dict(run_id=meta.get("run_id", run_dir.name), grid=meta.get("grid"), arm=meta.get("arm"),
                             seed=meta.get("seed"), metric=metric, value=float(value)))
    return pd.DataFrame(rows, columns=FINAL_COLUMNS)


# ---------------------------------------------------------------- statistics


def summary_table(final: pd.DataFrame) -> pd.DataFrame:
    """Per arm × metric: n, mean, std and the 95 % Student-t interval over seeds."""
    rows = []
    for (arm, metric), group in final.groupby(["arm", "metric"], sort=False):
        rows.append(dict(arm=arm, metric=metric, **mean_interval(group["value"])))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def paired_table(final: pd.DataFrame, reference: str, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Each arm minus ``reference``, per metric, paired by seed, with a t-interval (df = n − 1).

    For ``closer`` metrics the compared quantity is each run's distance |value − bach value|
    (so a negative difference means the arm is closer to Bach).

    Args:
        final: :func:`final_table`.
        reference: the arm subtracted from every other arm.
        metrics: compare only these (in this order; ones no run has are skipped); default: every
            metric except the ``bach/*`` references.
    """
    if final.empty or reference not in set(final["arm"]):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    values = final.pivot_table(index=["arm", "seed"], columns="metric", values="value", aggfunc="first")
    rows = []
    arms = [arm for arm in dict.fromkeys(final["arm"]) if arm != reference]
    wanted = dict.fromkeys(final["metric"]) if metrics is None else [m for m in metrics if m in values]
    for metric in wanted:
        direction = metric_direction(metric)
        if metric.startswith(BACH_PREFIX) or metric not in values:  # pivot_table drops all-NaN metrics
            continue
        compared = "value"
        quantity = values[metric]
        if direction == "closer":
            bach = reference_key(metric)
            if bach in values:
                quantity = (values[metric] - values[bach]).abs()
                compared = f"distance to {bach}"
            else:
                direction = "none"  # no reference value to be closer to
        for arm in arms:
            if arm not in quantity.index.get_level_values("arm"):
                continue
            pairs = pd.concat([quantity.loc[arm], quantity.loc[reference]], axis=1, keys=["arm", "ref"]).dropna()
            if pairs.empty:  # a metric one of the two arms does not have (e.g. latent/* of the direct predictor)
                continue
            stats = mean_interval(pairs["arm"] - pairs["ref"])
            excludes = bool(stats["n"] >= 2 and (stats["ci_low"] > 0 or stats["ci_high"] < 0))
            rows.append(dict(arm=arm, reference=reference, metric=metric, direction=direction, compared=compared,
                             n=stats["n"], mean_diff=stats["mean"], std_diff=stats["std"],
                             t=t_critical(stats["n"]), ci_low=stats["ci_low"], ci_high=stats["ci_high"],
                             excludes_zero=excludes, better=_better(stats["mean"], direction, arm, reference)))
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def baseline_tables(final: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every :data:`BASELINE_TABLES` table of ``final``: each arm minus that baseline, paired by seed."""
    return {name: paired_table(final, baseline, DIRECT_METRICS) for name, baseline in BASELINE_TABLES.items()}


def nll_gains(paired: pd.DataFrame) -> dict[str, dict]:
    """Per arm, how many nats per measure lower its test NLL is than the table's reference, paired by
    seed: −(arm − reference) with the interval flipped, so that positive means better, as for
    ``gain_vs_unigram``."""
    if paired.empty:
        return {}
    rows = paired[paired["metric"] == COMPARISON_NLL]
    return {row["arm"]: dict(n=row["n"], mean=-row["mean_diff"], ci_low=-row["ci_high"], ci_high=-row["ci_low"])
            for _, row in rows.iterrows()}


def _better(mean_diff: float, direction: str, arm: str, reference: str) -> str:
    """Which arm the mean paired difference (arm − reference) favours; "" if undecidable."""
    if direction == "none" or pd.isna(mean_diff):
        return ""
    if mean_diff == 0:
        return "tie"
    arm_higher = mean_diff > 0
    return arm if arm_higher == (direction == "higher") else reference


def aggregate(grid_dir: Path, reference: str | None = None) -> dict[str, pd.DataFrame]:
    """Build and atomically write every table of a grid folder; returns them by name.

    Args:
        grid_dir: ``OUT/<grid>``.
        reference: arm the others are compared with; default: ``grid.json``'s reference.
    """
    grid_dir = Path(grid_dir)
    if reference is None:
        reference = read_grid(grid_dir).get("reference", "baseline")
    final = final_table(grid_dir)
    tables = dict(runs=runs_table(grid_dir), final=final, summary=summary_table(final),
                  paired=paired_table(final, reference), **baseline_tables(final), status=status_table(grid_dir))
    for name, table in tables.items():
        atomic_write_csv(table, grid_dir / f"{name}.csv")
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ablations/aggregate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, help="grid name (a folder of --out)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output root (default reports/)")
    parser.add_argument("--reference", default=None, help="arm to compare with (default: the grid's reference)")
    args = parser.parse_args(argv)
    grid_dir = args.out / args.grid
    if not (grid_dir / runfolder.RUNS).is_dir():
        grids = sorted(p.name for p in args.out.glob("*/") if (p / runfolder.RUNS).is_dir()) \
            if args.out.is_dir() else []
        print(f"ablations/aggregate.py: error: no runs in {grid_dir}; grids with runs under {args.out}: "
              f"{', '.join(grids) or 'none'}", file=sys.stderr)
        return 2
    tables = aggregate(grid_dir, args.reference)
    print(f"{grid_dir}: {len(tables['status'])} runs, {len(tables['final'])} final values, "
          f"{len(tables['runs'])} logged values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
