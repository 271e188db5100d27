"""Does the default model learn and write music? Train, evaluate, and print the goals.

    python benchmarks/learning.py [--seeds 3] [--jobs 2] [--threads 1] [--out reports/learning]
        [--skip-quick] [--harmonize] [--report-only]

Runs, through ``ablations/run.py`` (so it resumes when interrupted and writes each grid's report
under ``--out``):

- the ``decoder`` grid in the ``cpu`` profile: the default (the autoregressive measure decoder with
  free bits), the factorised decoder, the same writer without free bits, the direct predictor and
  the autoregressive baseline, same split, seeds and budget;
- the ``harmony`` grid in the ``quick`` profile (the README's main job), timed.

Then it prints, beside the positional unigram, the direct predictor and the autoregressive
baseline on the same split:

- ``cpu``: each run's best validation NLL, test NLL, greedy onset accuracy and wall time; the
  default's test NLL on every seed against the anchor (≤ 29.8, an autoregressive LSTM trained on the
  same windows; stretch ≤ 25) and against the autoregressive baseline of the same seed; wall time
  per run ≤ 20 min (one thread, two runs at once); every arm's gain over the autoregressive baseline
  and the direct predictor (paired by seed, 95 % t-interval); whether the latent is in use (active
  units, and what handing each window's z to another window costs);
- continuations of the test chorales of ≥ 16 measures (8 seed measures, 8 written, the default
  decoding of ``rmvae generate``, 3 draws each; mean over seeds): each statistic within 10 % of
  Bach's on the same measures, repeat rate ≤ 0.02, parallel fifths/octaves ≤ 0.005 per note, ≤ 1 %
  of notes out of range;
- with ``--harmonize``: harmonizations of the same chorales' sopranos by each seed's default
  checkpoint (``benchmarks/harmonize_statistics.py``): dissonance within 10 % of Bach's, parallels
  ≤ 0.005 per note, ≤ 1 % out of range;
- ``quick``: every arm's validation NLL at least 2 nats under the positional unigram on every seed,
  and the grid's wall time under 10 minutes on 2 cores.

The goal lines are written to ``benchmarks/results/learning_cpu.txt`` too.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ablations.aggregate import nll_gains
from ablations.grids import AUTOREGRESSIVE_ARM, DIRECT_ARM
from common import publish  # benchmarks/ is the script's folder

REPO = Path(__file__).resolve().parent.parent
ANCHOR_NLL, ANCHOR_STRETCH = 29.8, 25.0  # test NLL in nats per target measure the default must reach
WALL_MINUTES = 20.0  # per run in the cpu profile (training + evaluation)
QUICK_MARGIN, QUICK_WALL_MINUTES = 2.0, 10.0
CPU_GRID, QUICK_GRID = "decoder", "harmony"
DEFAULT_ARM = "autoregressive"  # the decoder grid's arm that is the default configuration
CONTINUATION_MODE = "default"  # rmvae generate's default decoding (rmvae.evaluation.decoding_modes)
# statistic → ("rel", share of Bach's value) or ("max", absolute ceiling): the musical goals
CONTINUATION_GOALS = {"distinct_pitches_per_voice": ("rel", 0.10), "repeat_rate": ("max", 0.02),
                      "note_length_entropy": ("rel", 0.10), "onsets_per_measure": ("rel", 0.10),
                      "dissonance_rate": ("rel", 0.10), "parallel_perfects_per_note": ("max", 0.005),
                      "out_of_range_share": ("max", 0.01)}
HARMONIZE_GOALS = {key: CONTINUATION_GOALS[key]
                   for key in ("dissonance_rate", "parallel_perfects_per_note", "out_of_range_share")}
ARM_WIDTH = len("autoregressive_no_free_bits")


def run_grid(grid: str, profile: str, args, arms: list[str] | None = None) -> tuple[Path, float]:
    """Train (or resume) ``grid`` in ``profile``; its folder and the seconds this call took."""
    from ablations.run import main as run_main

    out = args.out / profile
    argv = ["--grid", grid, "--profile", profile, "--seeds", str(args.seeds), "--out", str(out),
            "--launcher", "local-parallel", "--jobs", str(args.jobs), "--threads", str(args.threads)]
    if arms:
        argv += ["--arms", *arms]
    if args.no_wandb:
        argv.append("--no-wandb")
    started = time.perf_counter()
    if run_main(argv) == 2:
        raise SystemExit("ablations/run.py refused the grid (exit 2); see above")
    return out / grid, time.perf_counter() - started


def best_val_nll(grid_dir: Path) -> pd.DataFrame:
    """Lowest validation NLL of every finished run (what best.ckpt was selected on): arm, seed, val_nll."""
    runs = pd.read_csv(grid_dir / "runs.csv")
    status = pd.read_csv(grid_dir / "status.csv")
    finished = set(status[status["status"] == "done"]["run_id"])
    val = runs[(runs["metric"] == "val/nll") & runs["run_id"].isin(finished)]
    return val.groupby(["arm", "seed"], as_index=False)["value"].min().rename(columns={"value": "val_nll"})


def final_metrics(grid_dir: Path, metrics: list[str]) -> pd.DataFrame:
    """The test metrics of every finished run, one column each (NaN where a run has none)."""
    final = pd.read_csv(grid_dir / "final.csv")
    wide = final[final["metric"].isin(metrics)].pivot_table(index=["arm", "seed"], columns="metric", values="value")
    return wide.reindex(columns=metrics).reset_index()


def val_unigram(grid_dir: Path) -> float:
    """The positional unigram's validation NLL on the grid's own data config."""
    import json

    from rmvae.baselines import unigram_scores
    from rmvae.config import Config
    from rmvae.data.datamodule import ChoraleDataModule

    run_dir = next((grid_dir / "runs").iterdir())
    config = Config.from_stored(json.loads((run_dir / "config.json").read_text()))
    datamodule = ChoraleDataModule(config.data)
    datamodule.setup()
    return unigram_scores(datamodule.datasets["train"], datamodule.datasets["val"], datamodule.pitch_range)["nll"]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goal_range(kind: str, tolerance: float, bach: float) -> tuple[float | None, float]:
    """The goal's bounds: within ``tolerance`` of Bach's value, or at most ``tolerance``."""
    if kind == "rel":
        return bach * (1 - tolerance), bach * (1 + tolerance)
    return None, tolerance


def goal_line(statistic: str, value: float, bach: float, kind: str, tolerance: float) -> str:
    low, high = goal_range(kind, tolerance, bach)
    bounds = f"{low:.3f}–{high:.3f}" if low is not None else f"≤ {high:g}"
    ok = not np.isnan(value) and (low is None or value >= low) and value <= high
    return f"  {statistic:28s} {value:7.4f} (Bach {bach:.4f})  goal {bounds}: {verdict(ok)}"


def gain_lines(grid_dir: Path, label: str, baseline: str) -> list[str]:
    """Every arm's test-NLL gain over ``baseline`` (its NLL − the arm's), paired by seed."""
    name = {AUTOREGRESSIVE_ARM: "paired_autoregressive.csv", DIRECT_ARM: "paired_direct.csv"}[baseline]
    path = grid_dir / name
    gains = nll_gains(pd.read_csv(path)) if path.exists() and path.stat().st_size else {}
    if not gains:
        return [f"{label}: no finished {baseline} runs paired with an arm yet"]
    lines = [f"{label}: gain over the {baseline} (its test NLL − the arm's, paired by seed, 95 % CI):"]
    for arm, gain in gains.items():
        lines.append(f"  {arm:{ARM_WIDTH}s} {gain['mean']:7.2f} [{gain['ci_low']:.2f}, {gain['ci_high']:.2f}] "
                     f"nats ({int(gain['n'])} seeds)")
    return lines


def default_goal_lines(table: pd.DataFrame) -> list[str]:
    """The default's test NLL per seed against the anchor and against the autoregressive baseline
    of the same seed (same budget), and its wall time per run, as met / NOT met lines."""
    per_seed = table[table["arm"] == DEFAULT_ARM].set_index("seed")
    nll = per_seed["test/nll"].dropna()
    values = ", ".join(f"{v:.2f}" for v in nll)
    worst = nll.max() if len(nll) else np.nan
    lines = [f"goal: test NLL ≤ {ANCHOR_NLL} (the anchor) on every seed ({values}): {verdict(worst <= ANCHOR_NLL)}; "
             f"stretch ≤ {ANCHOR_STRETCH}: {verdict(worst <= ANCHOR_STRETCH)}"]
    baseline = table[table["arm"] == AUTOREGRESSIVE_ARM].set_index("seed")["test/nll"].dropna()
    pairs = pd.concat([nll, baseline], axis=1, keys=["model", "baseline"]).dropna()
    if pairs.empty:
        lines.append(f"goal: test NLL no worse than the {AUTOREGRESSIVE_ARM} of the same seed and budget: "
                     "no finished pair of runs yet")
    else:
        shown = ", ".join(f"seed {seed}: {row.model:.2f} vs {row.baseline:.2f}" for seed, row in pairs.iterrows())
        lines.append(f"goal: test NLL no worse than the {AUTOREGRESSIVE_ARM} of the same seed and budget on every "
                     f"seed ({shown}): {verdict(bool((pairs['model'] <= pairs['baseline']).all()))}")
    minutes = (per_seed["train_seconds"] + per_seed["eval_seconds"]).dropna() / 60
    lines.append(f"goal: wall time per run ≤ {WALL_MINUTES:.0f} min (training + evaluation, 1 of 2 parallel jobs; "
                 f"{', '.join(f'{m:.1f}' for m in minutes)} min): "
                 f"{verdict(len(minutes) > 0 and minutes.max() <= WALL_MINUTES)}")
    return lines


def latent_lines(table: pd.DataFrame) -> list[str]:
    """Whether each latent arm's z is in use: active units and the cost of a shuffled z."""
    lines = ["latent in use (test, per seed): active units; NLL with each window's z handed to another − with its own"]
    for arm, rows in table.dropna(subset=["test/active_units"]).groupby("arm"):
        shuffle = rows["test/recon_nll_shuffled_z"] - rows["test/recon_nll"]
        lines.append(f"  {arm:{ARM_WIDTH}s} active units {', '.join(f'{v:.0f}' for v in rows['test/active_units'])}; "
                     f"z shuffled costs {', '.join(f'{v:.2f}' for v in shuffle)} nats")
    return lines


def continuation_lines(grid_dir: Path) -> list[str]:
    final = pd.read_csv(grid_dir / "final.csv")
    rows = final[final["arm"] == DEFAULT_ARM]
    seeds = rows["seed"].nunique()
    lines = [f"continuations of the test chorales ({CONTINUATION_MODE} decoding, mean over {seeds} seeds of "
             f"the per-seed means over chorales × draws):"]
    for statistic, (kind, tolerance) in CONTINUATION_GOALS.items():
        value = rows[rows["metric"] == f"{CONTINUATION_MODE}/{statistic}"]["value"].mean()
        bach = rows[rows["metric"] == f"bach/{statistic}"]["value"].mean()
        lines.append(goal_line(statistic, value, bach, kind, tolerance))
    return lines


def harmonize_lines(grid_dir: Path, draws: int) -> list[str]:
    """Each default-arm seed's best checkpoint harmonizes the test sopranos (harmonize_statistics.py)."""
    from harmonize_statistics import harmonize_rows
    from rmvae.evaluation import load_checkpoint
    from rmvae.metrics import STATISTICS

    status = pd.read_csv(grid_dir / "status.csv")
    done = status[(status["arm"] == DEFAULT_ARM) & (status["status"] == "done")]
    bach_means, model_means = [], []
    for run_id in done["run_id"]:
        module = load_checkpoint(grid_dir / "runs" / run_id / "checkpoints" / "best.ckpt")
        bach, model = harmonize_rows(module, "test", 16, draws)
        bach_means.append({s: np.nanmean([row[s] for row in bach]) for s in STATISTICS})
        model_means.append({s: np.nanmean([row[s] for row in model]) for s in STATISTICS})
    lines = [f"harmonizations of the test sopranos (16 measures, {draws} draws, default decoding, "
             f"mean over {len(model_means)} seeds):"]
    for statistic, (kind, tolerance) in HARMONIZE_GOALS.items():
        value = float(np.mean([row[statistic] for row in model_means])) if model_means else np.nan
        bach = float(np.mean([row[statistic] for row in bach_means])) if bach_means else np.nan
        lines.append(goal_line(statistic, value, bach, kind, tolerance))
    return lines


def quick_lines(quick_dir: Path, unigram_val: float, seconds: float | None, jobs: int) -> list[str]:
    """Every arm of the quick grid at least QUICK_MARGIN under the unigram; the grid's wall time."""
    quick = best_val_nll(quick_dir)
    goal = min(val_unigram(quick_dir), unigram_val) - QUICK_MARGIN  # the stricter of the two unigrams
    lines = [f"quick profile ({QUICK_GRID} grid), val NLL per seed; goal ≤ {goal:.2f} on every seed and arm "
             f"(positional unigram {unigram_val:.2f} on the whole training split, less {QUICK_MARGIN}):"]
    for arm, rows in quick.groupby("arm"):
        lines.append(f"  {arm:{ARM_WIDTH}s} {', '.join(f'{v:.2f}' for v in rows['val_nll'])}: "
                     f"{verdict(rows['val_nll'].max() <= goal)}")
    # The runs' own training + evaluation seconds, `jobs` at once; this call's wall time instead when
    # it trained them all (it is then the longer: it adds start-up and the report).
    status = pd.read_csv(quick_dir / "status.csv")
    estimate = float((status["train_seconds"] + status["eval_seconds"]).sum()) / jobs
    if seconds is not None and seconds >= estimate:
        how = "this call"
    else:
        seconds, how = estimate, f"the runs' training + evaluation seconds / {jobs} jobs"
    lines.append(f"goal: quick {QUICK_GRID} grid under {QUICK_WALL_MINUTES:.0f} min on 2 cores ({how}: "
                 f"{seconds / 60:.1f} min): {verdict(seconds / 60 < QUICK_WALL_MINUTES)}")
    return lines


def report(cpu_dir: Path, quick_dir: Path | None, quick_seconds: float | None, args) -> list[str]:
    """The goal lines, every model number beside the baselines."""
    metrics = ["test/nll", "test/acc_onsets", "test/unigram_nll", "test/active_units", "test/recon_nll",
               "test/recon_nll_shuffled_z"]
    table = best_val_nll(cpu_dir).merge(final_metrics(cpu_dir, metrics), on=["arm", "seed"], how="left")
    status = pd.read_csv(cpu_dir / "status.csv")
    table = table.merge(status[["arm", "seed", "train_seconds", "eval_seconds"]], on=["arm", "seed"], how="left")
    unigram_val = val_unigram(cpu_dir)
    unigram_test = float(table["test/unigram_nll"].dropna().iloc[0])
    lines = [f"cpu profile ({CPU_GRID} grid, {table['seed'].nunique()} seeds); NLL in nats per target measure",
             f"{'arm':{ARM_WIDTH}s} {'seed':>4s} {'val NLL':>8s} {'test NLL':>9s} {'onset acc':>10s} {'train s':>8s} "
             f"{'eval s':>7s}",
             f"{'positional unigram':{ARM_WIDTH}s} {'':>4s} {unigram_val:8.2f} {unigram_test:9.2f}"]
    for row in table.sort_values(["arm", "seed"]).to_dict("records"):
        lines.append(f"{row['arm']:{ARM_WIDTH}s} {row['seed']:4d} {row['val_nll']:8.2f} {row['test/nll']:9.2f} "
                     f"{row['test/acc_onsets']:10.3f} {row['train_seconds']:8.0f} {row['eval_seconds']:7.0f}")
    if (table["arm"] == DEFAULT_ARM).any():
        lines += default_goal_lines(table)
        lines += continuation_lines(cpu_dir)
        if args.harmonize:
            lines += harmonize_lines(cpu_dir, args.draws)
    lines += latent_lines(table)
    lines += gain_lines(cpu_dir, "cpu profile", AUTOREGRESSIVE_ARM)
    lines += gain_lines(cpu_dir, "cpu profile", DIRECT_ARM)
    if quick_dir is not None:
        lines += quick_lines(quick_dir, unigram_val, quick_seconds, args.jobs)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "learning")
    parser.add_argument("--skip-quick", action="store_true", help="only the cpu profile")
    parser.add_argument("--harmonize", action="store_true", help="also harmonize the test sopranos (minutes)")
    parser.add_argument("--draws", type=int, default=3, help="draws per chorale of --harmonize")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the goals from the runs the grids have finished so far")
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "learning_cpu.txt")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    quick_seconds = None
    if args.report_only:
        from ablations.aggregate import aggregate

        cpu_dir = args.out / "cpu" / CPU_GRID
        quick_dir = None if args.skip_quick else args.out / "quick" / QUICK_GRID
        for grid_dir in filter(None, (cpu_dir, quick_dir)):
            aggregate(grid_dir)  # tables of what has finished
    else:
        quick_dir, quick_seconds = (None, None) if args.skip_quick else run_grid(QUICK_GRID, "quick", args)
        cpu_dir, _ = run_grid(CPU_GRID, "cpu", args)
    lines = report(cpu_dir, quick_dir, quick_seconds, args)
    publish(lines, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
