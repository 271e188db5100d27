"""Figures and a Markdown report of one ablation grid, from its saved tables only.

Usage (from the repository root; ``python -m reports.build`` works anywhere)::

    python reports/build.py --grid harmony [--out reports/] [--aggregate]

Reads ``OUT/<grid>/{runs,final,summary,paired,paired_direct,paired_autoregressive,status}.csv`` and
``grid.json`` (written by ``ablations/aggregate.py``; built first if missing, or with ``--aggregate``;
``paired_autoregressive.csv``, newer than some folders, is derived from ``final.csv`` if missing) and writes
``OUT/<grid>/figures/*.png``, ``OUT/<grid>/samples/<arm>.{mid,png,wav}`` and
``OUT/<grid>/report.md``. Nothing is trained and neither torch nor Lightning is imported,
so a report can be rebuilt anywhere the tables are. The pieces: :mod:`reports.tables`,
:mod:`reports.figures`, :mod:`reports.samples`, :mod:`reports.text`, :mod:`reports.sections`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ablations import runfolder
from ablations.grids import DOSE_WEIGHTS
from ablations.runfolder import read_grid
from reports.figures import (plot_collapse, plot_dose_response, plot_final_metrics, plot_learning_curves,
                             plot_music_stats, plot_nll_vs_unigram, use_theme)
from reports.samples import WAV_SECONDS, copy_samples
from reports.sections import dose_section, draws_sentence, learn_section, music_table, thesis_section
from reports.tables import arm_order, dose_weights, load_tables
from reports.text import (DIRECTION_WORDS, detectable_difference, detectable_note, few_seeds_note, figure_lines, fmt,
                          summary_cell, verdict)
from rmvae.files import atomic_write_text
from rmvae.intervals import t_critical


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
    status, summary = tables["status"], tables["summary"]
    arms = arm_order(grid, status, summary)
    lines = _header(name, grid, reference, status)
    lines += learn_section(grid_dir, tables, arms, list(learn_figures))
    lines += [""] + thesis_section(name, grid, tables)
    lines += _arms_section(grid, arms)
    lines += _certainty_section(reference, status, summary, arms)
    if name in DOSE_WEIGHTS:
        lines += [""] + dose_section(grid_dir, name, tables, dose_figure)
    lines += _comparison_section(reference, tables["paired"], summary)
    lines += _music_section(summary, arms)
    lines += ["", "## Figures", ""] + figure_lines(grid_dir, figures)
    if not figures:
        lines.append("No figures yet (no finished runs).")
    lines += _samples_section(samples, arms)
    lines += _failed_section(status)
    lines += _runs_section(status)
    path = grid_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _header(name: str, grid: dict, reference: str, status: pd.DataFrame) -> list[str]:
    """The title and one line of what the grid is: profile, version, reference arm, runs by state."""
    counts = status["status"].value_counts().to_dict() if not status.empty else {}
    return [f"# Ablation `{name}`", "",
            f"Profile `{grid.get('profile', '?')}`, grid version {grid.get('grid_version', '?')}; "
            f"reference arm `{reference}`. Runs: " +
            (", ".join(f"{count} {state}" for state, count in counts.items()) or "none") + ".", ""]


def _arms_section(grid: dict, arms: list[str]) -> list[str]:
    """Each arm with the overrides that make it (the reader needs them to read the comparisons)."""
    lines = ["", "## Arms", "", "| arm | overrides |", "|---|---|"]
    for arm in arms:
        overrides = grid.get("arms", {}).get(arm, {}).get("overrides", {})
        lines.append(f"| `{arm}` | {', '.join(f'`{k}={v}`' for k, v in overrides.items()) or '(the baseline)'} |")
    return lines


def _certainty_section(reference: str, status: pd.DataFrame, summary: pd.DataFrame, arms: list[str]) -> list[str]:
    """How the intervals are made and how wide so few seeds leave them, before any verdict is read."""
    t3 = t_critical(3)
    lines = ["", "## How sure is this?", "",
             f"Every arm ran the same seeds on the same data split with the same training budget. Intervals are "
             f"95 % Student-t intervals over seeds, and arms are compared *paired by seed* (arm − `{reference}`). "
             f"With 3 seeds a t-interval has 2 degrees of freedom, t = {t3:.2f}: the interval is wide and only "
             f"large effects exclude zero. `--seeds N` raises the number of seeds "
             f"(5 seeds: t = {t_critical(5):.2f}; 10 seeds: t = {t_critical(10):.2f}). "
             "Three values are not bootstrapped; the bands in the figures are the same t-intervals, cut at the "
             "values a metric can take (a share at 0 and 1, an NLL, KL or count at 0)."]
    seeds_per_arm = int(summary["n"].max()) if not summary.empty else 0
    if seeds_per_arm:
        lines.append(f"\nThis report has up to {seeds_per_arm} finished seed(s) per arm"
                     + (f" (t = {t_critical(seeds_per_arm):.2f})." if seeds_per_arm >= 2 else "."))
    few_seeds = few_seeds_note(status, arms)
    if few_seeds:
        lines += ["", few_seeds]
    return lines


def _comparison_section(reference: str, paired: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Every judged metric of every arm against the reference, paired by seed, with its verdict."""
    lines = ["", f"## Which arm is better (test split, vs `{reference}`)", ""]
    if paired.empty:
        lines.append("No paired comparison yet (the reference arm or other arms have no finished runs).")
        return lines
    lines += ["| metric | better is | arm | reference mean [95 % CI] | arm mean [95 % CI] | "
              "difference arm − ref [95 % CI] | smallest detectable difference | excludes 0 | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    indexed = summary.set_index(["arm", "metric"]) if not summary.empty else None
    descriptive = sorted(set(paired.loc[paired["direction"] == "none", "metric"]))
    for _, row in paired[paired["direction"] != "none"].iterrows():
        lines.append(_comparison_row(row, reference, indexed))
    lines += ["", detectable_note()]
    if descriptive:
        lines += ["", "Shown in the tables but not judged (no better direction, or no Bach value to be closer "
                  "to): " + ", ".join(f"`{m}`" for m in descriptive) + "."]
    return lines


def _comparison_row(row: pd.Series, reference: str, indexed: pd.DataFrame | None) -> str:
    """One row of the comparison table: both means, the paired difference, what could be detected, the verdict."""
    ref_stats = summary_cell(indexed, reference, row["metric"])
    arm_stats = summary_cell(indexed, row["arm"], row["metric"])
    compared = "" if row["compared"] == "value" else f" of {row['compared']}"
    difference = (f"{fmt(row['mean_diff'])}{compared} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
                  if not pd.isna(row["ci_low"]) else f"{fmt(row['mean_diff'])}{compared} (n={int(row['n'])})")
    return (f"| {row['metric']} | {DIRECTION_WORDS.get(row['direction'], row['direction'])} | "
            f"`{row['arm']}` | {ref_stats} | {arm_stats} | {difference} | "
            f"{fmt(detectable_difference(row['n'], row['std_diff']))} | "
            f"{'yes' if row['excludes_zero'] else 'no'} | {verdict(row)} |")


def _music_section(summary: pd.DataFrame, arms: list[str]) -> list[str]:
    """The continuations' musical statistics beside held-out Bach's (empty when none was measured)."""
    music = music_table(summary, arms)
    if not music:
        return []
    return ["", "## Musical statistics against held-out Bach", "",
            "Mean over seeds [95 % t-interval]; the closer to the Bach column, the better."
            + draws_sentence(summary), ""] + music


def _samples_section(samples: dict[str, dict[str, str]], arms: list[str]) -> list[str]:
    """Links to each arm's sample (MIDI, WAV, pianoroll), the pianoroll shown inline."""
    lines = ["", "## Samples (one per arm, lowest finished seed)", "",
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
    return lines


def _failed_section(status: pd.DataFrame) -> list[str]:
    """The failed runs with their reasons, and how many are left to resume."""
    lines = ["", "## Failed runs", ""]
    failed = status[status["status"] == "failed"] if not status.empty else status
    if failed.empty:
        lines.append("None.")
    for _, row in failed.iterrows():
        lines.append(f"- `{row['run_id']}` ({row['arm']}, seed {row['seed']}): {row['reason']}")
    unfinished = status[status["status"].isin(["pending", "interrupted"])] if not status.empty else status
    if not unfinished.empty:
        lines += ["", f"{len(unfinished)} run(s) not finished: rerun the same command to resume them."]
    return lines


def _runs_section(status: pd.DataFrame) -> list[str]:
    """Every run with its folder, W&B id and time, then the tables' files."""
    lines = ["", "## Runs", "", "| arm | seed | run id | status | W&B run id | steps | train s | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for _, row in status.iterrows():
        lines.append(f"| `{row['arm']}` | {row['seed']} | [`{row['run_id']}`](runs/{row['run_id']}/) | {row['status']} | "
                     f"{'' if pd.isna(row['wandb_run_id']) else row['wandb_run_id']} | {fmt(row['steps'], 6)} | "
                     f"{fmt(row['train_seconds'], 3)} | {fmt(row['eval_seconds'], 3)} |")
    finished = status[status["status"] == "done"] if not status.empty else status
    if not finished.empty:
        lines += ["", f"Time of the {len(finished)} finished runs: training {finished['train_seconds'].sum():.0f} s, "
                  f"evaluation {finished['eval_seconds'].sum():.0f} s in total (per run, summed; runs in "
                  "parallel overlap, and a resumed run counts only the time since its last restart)."]
    lines += ["", "Tables: [runs.csv](runs.csv) (every run × step × metric), [final.csv](final.csv), "
              "[summary.csv](summary.csv), [paired.csv](paired.csv), [paired_direct.csv](paired_direct.csv), "
              "[paired_autoregressive.csv](paired_autoregressive.csv), [status.csv](status.csv).", ""]
    return lines


def build(grid_dir: Path, refresh: bool = False) -> Path:
    """Write the figures, samples and ``report.md`` of ``grid_dir``; returns the report's path."""
    grid_dir = Path(grid_dir)
    tables = load_tables(grid_dir, refresh)
    grid = read_grid(grid_dir)
    arms = arm_order(grid, tables["status"], tables["summary"])
    use_theme()
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
    parser.add_argument("--publish", type=Path, metavar="ROOT",
                        help="also copy the report, tables, figures and samples to ROOT/<grid>/ (e.g. docs/results)")
    args = parser.parse_args(argv)
    grid_dir = args.out / args.grid
    if not (grid_dir / runfolder.GRID_JSON).exists() and not (grid_dir / runfolder.RUNS).is_dir():
        grids = sorted(p.name for p in args.out.glob("*/") if (p / runfolder.GRID_JSON).exists()) \
            if args.out.is_dir() else []
        print(f"reports/build.py: error: no grid in {grid_dir}; grids under {args.out}: {', '.join(grids) or 'none'}",
              file=sys.stderr)
        return 2
    path = build(grid_dir, refresh=args.aggregate)
    print(f"report: {path}")
    if args.publish:
        from reports.publish import publish

        print(f"published: {publish(grid_dir, args.publish)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
