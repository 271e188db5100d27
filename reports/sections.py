"""Sections of ``report.md`` that answer one question each: does the model learn, what does a
music-loss weight do (dose response), and what do the runs say about the thesis's conclusions."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ablations.aggregate import mean_interval, nll_gains, paired_table, reference_key
from ablations.grids import AUTOREGRESSIVE_ARM, BASELINE_ARM, DIRECT_ARM, DOSE_WEIGHTS
from reports.tables import (COMPARISON_NLL, DOSE_STATISTIC, GAIN_VS_UNIGRAM, LEARN_METRICS, UNIGRAM, VAL_NLL,
                            arm_order, dose_weights, music_metrics)
from reports.text import (DIRECTION_WORDS, beats, detectable_difference, figure_lines, fmt, interval, summary_cell,
                          unigram_cell)

LEARN_INTRO = (
    f"Test NLL: importance-weighted negative log-likelihood of the next measure in nats per target measure "
    f"(lower is better; checkpoints are selected on `{VAL_NLL}`), mean over seeds [95 % t-interval]. The "
    f"{UNIGRAM} predicts each token from its voice and step in the measure alone, counted on the training split; "
    f"it is the same for every run on the same data. *Beats the positional unigram by*: unigram NLL − arm NLL "
    f"(`{GAIN_VS_UNIGRAM}`), mean over seeds [95 % t-interval over seeds]. *Beats the direct predictor by*: "
    f"`{DIRECT_ARM}` NLL − arm NLL, paired by seed ([paired_direct.csv](paired_direct.csv)); `{DIRECT_ARM}` is "
    "trained like the arms but has no latent variables. *Beats the autoregressive baseline by*: "
    f"`{AUTOREGRESSIVE_ARM}` NLL − arm NLL, paired by seed ([paired_autoregressive.csv](paired_autoregressive.csv)); "
    f"`{AUTOREGRESSIVE_ARM}` is an LSTM over the window's tokens with no latent, trained with the same data, seeds "
    "and budget; its NLL is the exact next-measure NLL, in the same unit. An arm beats a baseline when the whole "
    "interval lies above 0.")
# The trained baselines of the learn section: name in the report → its paired table (ablations.aggregate).
TRAINED_BASELINE_TABLES = {"direct predictor": "paired_direct", "autoregressive baseline": "paired_autoregressive"}


def _learn_table(indexed: pd.DataFrame, final: pd.DataFrame, shown: list[str], gains: dict[str, dict]) -> list[str]:
    """One row per arm (test NLL, accuracies, gains over each baseline) and the unigram's row."""
    lines = ["| arm | test NLL [95 % CI] | test acc | test onset acc | "
             + " | ".join(f"beats the {baseline} by" for baseline in gains) + " |", "|---" * (4 + len(gains)) + "|"]
    for arm in shown:
        cells = [summary_cell(indexed, arm, metric) for metric in LEARN_METRICS]
        cells += [interval(over[arm]) if arm in over else "—" for over in gains.values()]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    unigram = [unigram_cell(final, metric) for metric in LEARN_METRICS.values()] + ["—"] * len(gains)
    return lines + [f"| {UNIGRAM} | " + " | ".join(unigram) + " |"]


def learn_section(grid_dir: Path, tables: dict[str, pd.DataFrame], arms: list[str],
                  figures: list[Path]) -> list[str]:
    """The report's opening: does each arm predict the next measure better than the positional
    unigram (no context), the direct predictor (no latents) and the autoregressive baseline (what
    the field would train instead)? An arm that beats none has learnt nothing the ablation's other
    comparisons could be about."""
    summary = tables["summary"]
    lines = ["## Does the model learn?", "", LEARN_INTRO, ""]
    indexed = summary.set_index(["arm", "metric"]) if not summary.empty else None
    shown = [arm for arm in arms if indexed is not None and any((arm, m) in indexed.index for m in LEARN_METRICS)]
    if not shown:
        return lines + [f"No test NLL yet (no finished runs, or runs evaluated before `{COMPARISON_NLL}` "
                        "existed).", ""] + figure_lines(grid_dir, figures)
    gains = {UNIGRAM: {arm: indexed.loc[(arm, GAIN_VS_UNIGRAM)] for arm in shown
                       if (arm, GAIN_VS_UNIGRAM) in indexed.index}}
    gains.update({baseline: nll_gains(tables.get(table, pd.DataFrame()))
                  for baseline, table in TRAINED_BASELINE_TABLES.items()})
    lines += _learn_table(indexed, tables["final"], shown, gains) + [""]
    for arm in shown:
        sentences = [beats(arm, baseline, over[arm]) for baseline, over in gains.items() if arm in over]
        lines.append("- " + (" ".join(sentences) or f"`{arm}`: no `{GAIN_VS_UNIGRAM}` in its runs."))
    return lines + [""] + figure_lines(grid_dir, figures)


# Dose-response grids (ablations.grids.DOSE_WEIGHTS): ‖∇term‖/‖∇ELBO‖ of each unweighted music term, so that
# a weight w has the gradient share w × ratio. Measured by benchmarks/music_loss_share.py on ONE checkpoint
# (default design, cpu profile, seed 0, 6 training batches): an order of magnitude, not a per-run measurement.
GRADIENT_SHARE_RATIO = {"harmony": 0.289, "scale": 0.159}


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
    return f"{word} {interval(stats)}{unit} ({'detectable' if excludes else f'not detectable at {int(n)} seeds'})"


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
             f"not a per-run measurement). `{statistic}`: latent-sampled continuations, held-out Bach {fmt(bach)}. "
             "Mean over seeds [95 % t-interval]; differences are arm − weight 0 on the raw values, paired by seed.", "",
             f"| weight | gradient share | test NLL | {statistic} | NLL − weight 0 | {statistic} − weight 0 |",
             "|---|---|---|---|---|---|"]
    indexed = tables["summary"].set_index(["arm", "metric"]) if not tables["summary"].empty else None
    diffs = {arm: {m: _to_zero(final, arm, zero, m) for m in (COMPARISON_NLL, statistic)} for arm in weights}
    for arm, weight in weights.items():
        cells = [summary_cell(indexed, arm, m) for m in (COMPARISON_NLL, statistic)]
        cells += [interval(d) if d else "—" for d in diffs[arm].values()]
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
    return lines + [""] + figure_lines(grid_dir, [figure] if figure else [])


# The thesis's conclusion (its slides, "Conclusion": "The different loss functions and the RPoE layer don't help
# the training"), per grid: (the claim, the arm with the feature, the arm without it). Transpose and size it
# judged by listener polls only; the other grids are this project's own.
THESIS_CONCLUSIONS: dict[str, tuple[str, str, str]] = {
    "harmony": ("the harmony loss does not help", "harmony_on", "harmony_off"),
    "scale_rhythm": ("the scale and rhythm losses do not help", "scale_rhythm_on", "scale_rhythm_off"),
    "rpoe": ("the RPoE layer does not help", "rpoe_on", "rpoe_off"),
}
POLLED_ONLY = ("transpose", "size")  # the thesis ran listener polls and stated no conclusion in its text
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
            ways[better].append((metric, f"`{metric}` ({DIRECTION_WORDS[direction]}) {interval(stats)}"))
    evidence = (f"{start} Here (`{with_arm}` − `{without_arm}`, paired by seed, {n} seeds, "
                f"{len(diffs)} judged metrics): "
                + "; ".join(f"`{arm}` is better on " + ", ".join(text for _, text in found)
                            for arm, found in ways.items() if found))
    if not ways[with_arm] and not ways[without_arm]:
        nll = diffs.get(COMPARISON_NLL)
        seen = (f"the smallest `{COMPARISON_NLL}` difference it could have seen is "
                f"{fmt(detectable_difference(nll[1]['n'], nll[1]['std']))} nats" if nll and nll[1]["n"] >= 2
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
    arms = set(arm_order(grid, tables["final"]))
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


def draws_sentence(summary: pd.DataFrame) -> str:
    """How many draws per chorale a run's sampled continuations average (runs that predate the
    ``draws`` result say nothing), so that a reader knows how noisy one run's value is."""
    found = sorted(set(summary.loc[summary["metric"] == "draws", "mean"].round().astype(int))) \
        if "metric" in summary else []
    if not found:
        return ""
    count = f"{found[0]}" if len(found) == 1 else f"{found[0]} to {found[-1]}"
    return f" A run's sampled continuations are the mean of {count} draws per chorale (greedy: one)."


def music_table(summary: pd.DataFrame, arms: list[str]) -> list[str]:
    metrics = music_metrics(summary)
    if not metrics:
        return []
    indexed = summary.set_index(["arm", "metric"])
    shown = [a for a in arms if a in set(summary["arm"])]
    lines = ["| statistic | Bach | " + " | ".join(f"`{a}`" for a in shown) + " |", "|---" * (len(shown) + 2) + "|"]
    for metric in metrics:
        bach = summary.loc[summary["metric"] == reference_key(metric), "mean"].mean()
        cells = [summary_cell(indexed, arm, metric) for arm in shown]
        lines.append(f"| {metric} | {fmt(bach)} | " + " | ".join(cells) + " |")
    return lines
