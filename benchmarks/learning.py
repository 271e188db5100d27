"""Does the model learn? Train, evaluate, and print the goals of "The model learns".

    python benchmarks/learning.py [--seeds 3] [--jobs 2] [--threads 1] [--out reports/learning]

Runs the ``objective`` grid (the default design, the thesis's objective on the default's
encoders, the thesis's exact design with RNN encoders, the direct predictor and the autoregressive
baseline; same split and budget) in the ``cpu`` profile and in the ``quick`` profile through
``ablations/run.py`` — so it resumes when interrupted and writes the grids' reports under ``--out`` —
then prints, beside the positional unigram, the direct predictor and the autoregressive baseline on
the same split:

- ``cpu``: best validation NLL per seed (goal ≤ 54.7, the one-minute MLP; stretch ≤ 52) and test
  greedy onset accuracy (goal ≥ 0.26, stretch ≥ 0.30); the default design's test NLL per seed
  against the anchor (≤ 29.8) and against the autoregressive baseline of the same seed and budget;
  wall time per run (goal ≤ 20 min);
- every arm's gain over the autoregressive baseline (its NLL − the arm's, paired by seed, 95 %
  t-interval), in each profile;
- ``quick``: validation NLL at least 2 nats under the positional unigram on every seed;
- continuations of the test chorales (8 seed + 8 measures, latent sampling): repeat rate
  ≤ 0.10, distinct pitches per voice ≥ 7, note-length entropy ≥ 1.0 bit, dissonance 0.30–0.45;
- the thesis's objective (and, with ``--thesis-design-seeds``, its exact RNN design) with the
  same budget. The RNN encoders cost ≈7× the default's FC step on CPU, so in the ``cpu``
  profile the exact thesis design is trained only for ``--thesis-design-seeds`` seeds (default
  0: an hour or more per seed on 2 cores); the ``quick`` profile trains every arm.

The goal lines are written to ``benchmarks/results/learning_cpu.txt`` too.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from ablations.aggregate import nll_gains
from ablations.grids import AUTOREGRESSIVE_ARM, DIRECT_ARM
from common import publish  # benchmarks/ is the script's folder

REPO = Path(__file__).resolve().parent.parent
MLP_NLL, MLP_NLL_STRETCH = 54.7, 52.0
ONSET_GOAL, ONSET_STRETCH = 0.26, 0.30
QUICK_MARGIN = 2.0
ANCHOR_NLL = 29.8  # test NLL in nats per target measure the default design must reach
WALL_MINUTES = 20.0  # per run in the cpu profile (training + evaluation)
ARM_WIDTH = len(AUTOREGRESSIVE_ARM)
CONTINUATION_GOALS = {  # statistic: (low, high) of the latent-sampled continuations
    "repeat_rate": (None, 0.10),
    "distinct_pitches_per_voice": (7.0, None),
    "note_length_entropy": (1.0, None),
    "dissonance_rate": (0.30, 0.45),
}
DEFAULT_ARM, THESIS_OBJECTIVE_ARM, THESIS_ARM = "default_design", "thesis_objective", "thesis_design"


def run_grid(profile: str, args, seeds: int, arms: list[str] | None = None) -> Path:
    """Train (or resume) the objective grid in one profile (only ``arms`` if given); returns its folder."""
    from ablations.run import main as run_main

    out = args.out / profile
    argv = ["--grid", "objective", "--profile", profile, "--seeds", str(seeds), "--out", str(out),
            "--launcher", "local-parallel", "--jobs", str(args.jobs), "--threads", str(args.threads)]
    if arms:
        argv += ["--arms", *arms]
    if args.no_wandb:
        argv.append("--no-wandb")
    if run_main(argv) == 2:
        raise SystemExit("ablations/run.py refused the grid (exit 2); see above")
    return out / "objective"


def best_val_nll(grid_dir: Path) -> pd.DataFrame:
    """Lowest validation NLL of every run (what best.ckpt was selected on): arm, seed, val_nll."""
    runs = pd.read_csv(grid_dir / "runs.csv")
    status = pd.read_csv(grid_dir / "status.csv")
    finished = set(status[status["status"] == "done"]["run_id"])
    val = runs[(runs["metric"] == "val/nll") & runs["run_id"].isin(finished)]
    return val.groupby(["arm", "seed"], as_index=False)["value"].min().rename(columns={"value": "val_nll"})


def test_metric(grid_dir: Path, metric: str) -> pd.DataFrame:
    final = pd.read_csv(grid_dir / "final.csv")
    rows = final[final["metric"] == metric]
    return rows[["arm", "seed", "value"]].rename(columns={"value": metric})


def val_unigram(grid_dir: Path) -> float:
    """The positional unigram's validation NLL on the grid's own data config."""
    import json

    from rmvae.baselines import unigram_scores
    from rmvae.config import Config
    from rmvae.data.datamodule import ChoraleDataModule

    run_dir = next((grid_dir / "runs").iterdir())
    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    datamodule = ChoraleDataModule(config.data)
    datamodule.setup()
    return unigram_scores(datamodule.datasets["train"], datamodule.datasets["val"], datamodule.pitch_range)["nll"]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def gain_lines(grid_dir: Path, label: str) -> list[str]:
    """Every arm's test-NLL gain over the autoregressive baseline, paired by seed (paired_autoregressive.csv)."""
    path = grid_dir / "paired_autoregressive.csv"
    gains = nll_gains(pd.read_csv(path)) if path.exists() and path.stat().st_size else {}
    if not gains:
        return [f"{label}: no finished {AUTOREGRESSIVE_ARM} runs paired with an arm yet"]
    lines = [f"{label}: gain over the autoregressive baseline (its test NLL − the arm's, paired by seed, 95 % CI):"]
    for arm, gain in gains.items():
        lines.append(f"  {arm:{ARM_WIDTH}s} {gain['mean']:7.2f} [{gain['ci_low']:.2f}, {gain['ci_high']:.2f}] "
                     f"nats ({int(gain['n'])} seeds)")
    return lines


def default_goal_lines(table: pd.DataFrame) -> list[str]:
    """The default design's test NLL per seed against the anchor and against the autoregressive baseline
    of the same seed (same budget), and its wall time per run, as met / NOT met lines."""
    per_seed = table[table["arm"] == DEFAULT_ARM].set_index("seed")
    nll = per_seed["test/nll"].dropna()
    values = ", ".join(f"{v:.2f}" for v in nll)
    lines = [f"goal: test NLL ≤ {ANCHOR_NLL} (the anchor) on every seed ({values}): "
             f"{verdict(len(nll) > 0 and nll.max() <= ANCHOR_NLL)}"]
    baseline = table[table["arm"] == AUTOREGRESSIVE_ARM].set_index("seed")["test/nll"].dropna()
    pairs = pd.concat([nll, baseline], axis=1, keys=["model", "baseline"]).dropna()
    if pairs.empty:
        lines.append(f"goal: test NLL below the {AUTOREGRESSIVE_ARM} of the same seed and budget: "
                     "no finished pair of runs yet")
    else:
        shown = ", ".join(f"seed {seed}: {row.model:.2f} vs {row.baseline:.2f}" for seed, row in pairs.iterrows())
        lines.append(f"goal: test NLL below the {AUTOREGRESSIVE_ARM} of the same seed and budget on every seed "
                     f"({shown}): {verdict(bool((pairs['model'] < pairs['baseline']).all()))}")
    minutes = (per_seed["train_seconds"] + per_seed["eval_seconds"]).dropna() / 60
    lines.append(f"goal: wall time per run ≤ {WALL_MINUTES:.0f} min (training + evaluation, 1 of 2 parallel jobs; "
                 f"{', '.join(f'{m:.1f}' for m in minutes)} min): "
                 f"{verdict(len(minutes) > 0 and minutes.max() <= WALL_MINUTES)}")
    return lines


def report(cpu_dir: Path, quick_dir: Path | None) -> list[str]:
    """The goal lines, every model number beside the baselines."""
    lines = []
    table = best_val_nll(cpu_dir)
    for metric in ("test/nll", "test/acc", "test/acc_onsets", "test/unigram_nll"):
        table = table.merge(test_metric(cpu_dir, metric), on=["arm", "seed"], how="left")
    status = pd.read_csv(cpu_dir / "status.csv")
    table = table.merge(status[["arm", "seed", "train_seconds", "eval_seconds"]], on=["arm", "seed"], how="left")
    unigram_val = val_unigram(cpu_dir)
    unigram_test = float(table["test/unigram_nll"].dropna().iloc[0])
    lines.append(f"cpu profile (objective grid, {table['seed'].nunique()} seeds); NLL in nats per target measure")
    lines.append(f"{'arm':{ARM_WIDTH}s} {'seed':>4s} {'val NLL':>8s} {'test NLL':>9s} {'test acc':>9s} "
                 f"{'onset acc':>10s} {'train s':>8s}")
    lines.append(f"{'positional unigram':{ARM_WIDTH}s} {'':>4s} {unigram_val:8.2f} {unigram_test:9.2f}")
    for row in table.sort_values(["arm", "seed"]).itertuples(index=False):
        lines.append(f"{row.arm:{ARM_WIDTH}s} {row.seed:4d} {row.val_nll:8.2f} {getattr(row, '_3'):9.2f} "
                     f"{getattr(row, '_4'):9.3f} {getattr(row, '_5'):10.3f} {row.train_seconds:8.0f}")
    default = table[table["arm"] == DEFAULT_ARM]
    if len(default):
        worst_val, worst_onset = default["val_nll"].max(), default["test/acc_onsets"].min()
        lines.append(f"goal: val NLL ≤ {MLP_NLL} on every seed (worst {worst_val:.2f}): {verdict(worst_val <= MLP_NLL)}; "
                     f"stretch ≤ {MLP_NLL_STRETCH}: {verdict(worst_val <= MLP_NLL_STRETCH)}")
        lines.append(f"goal: test onset accuracy ≥ {ONSET_GOAL} on every seed (worst {worst_onset:.3f}): "
                     f"{verdict(worst_onset >= ONSET_GOAL)}; stretch ≥ {ONSET_STRETCH}: "
                     f"{verdict(worst_onset >= ONSET_STRETCH)}")
        lines += default_goal_lines(table)
        final = pd.read_csv(cpu_dir / "final.csv")
        rows = final[final["arm"] == DEFAULT_ARM]
        lines.append("continuations of the test chorales, latent sampling (mean over seeds; Bach in brackets):")
        for statistic, (low, high) in CONTINUATION_GOALS.items():
            value = rows[rows["metric"] == f"latent/{statistic}"]["value"].mean()
            bach = rows[rows["metric"] == f"bach/{statistic}"]["value"].mean()
            bounds = f"{'' if low is None else f'≥ {low}'}{' and ' if low is not None and high is not None else ''}" \
                     f"{'' if high is None else f'≤ {high}'}"
            lines.append(f"  {statistic:28s} {value:6.3f} [{bach:.3f}]  goal {bounds}: {verdict(within(value, low, high))}")
    for arm in (THESIS_OBJECTIVE_ARM, THESIS_ARM):
        thesis = table[table["arm"] == arm]
        if len(thesis):
            lines.append(f"{arm}, same budget: val NLL {', '.join(f'{v:.2f}' for v in thesis['val_nll'])} "
                         f"(positional unigram {unigram_val:.2f}, default design "
                         f"{', '.join(f'{v:.2f}' for v in default['val_nll'])})")
    lines += gain_lines(cpu_dir, "cpu profile")
    if quick_dir is not None:
        lines += gain_lines(quick_dir, "quick profile")
        quick = best_val_nll(quick_dir)
        quick_unigram = val_unigram(quick_dir)
        for arm, rows in quick.groupby("arm"):
            lines.append(f"quick profile, {arm}: val NLL {', '.join(f'{v:.2f}' for v in rows['val_nll'])}")
        quick_default = quick[quick["arm"] == DEFAULT_ARM]["val_nll"]
        # The stricter of the two unigrams: the one counted on the whole training split.
        goal = min(quick_unigram, unigram_val) - QUICK_MARGIN
        lines.append(f"quick profile: default design val NLL per seed {', '.join(f'{v:.2f}' for v in quick_default)} "
                     f"(positional unigram {unigram_val:.2f} counted on the whole training split, {quick_unigram:.2f} "
                     f"on the quick profile's 80 pieces); goal ≤ {goal:.2f} on every seed: "
                     f"{verdict(len(quick_default) > 0 and quick_default.max() <= goal)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--thesis-design-seeds", type=int, default=0,
                        help="seeds of the exact thesis design (RNN encoders) in the cpu profile (default 0: slow)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "learning")
    parser.add_argument("--skip-quick", action="store_true", help="only the cpu profile")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the goals from the runs the grids have finished so far")
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "learning_cpu.txt")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.report_only:
        from ablations.aggregate import aggregate

        cpu_dir = args.out / "cpu" / "objective"
        quick_dir = None if args.skip_quick else args.out / "quick" / "objective"
        for grid_dir in filter(None, (cpu_dir, quick_dir)):
            aggregate(grid_dir)  # tables of what has finished
    else:
        quick_dir = None if args.skip_quick else run_grid("quick", args, args.seeds)
        cpu_dir = run_grid("cpu", args, args.seeds, [DEFAULT_ARM, THESIS_OBJECTIVE_ARM, DIRECT_ARM, AUTOREGRESSIVE_ARM])
        if args.thesis_design_seeds:
            run_grid("cpu", args, args.thesis_design_seeds, [THESIS_ARM])
    lines = report(cpu_dir, quick_dir)
    publish(lines, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
