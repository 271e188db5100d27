"""Aggregation of a grid folder: tidy tables and Student-t statistics checked by hand."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent

from ablations.aggregate import (DIRECT_METRICS, PAIRED_COLUMNS, aggregate, mean_interval, metric_direction,
                                 nll_gains, paired_table, summary_table)
from rmvae.intervals import mean_ci, t_critical
from ablations.grids import AUTOREGRESSIVE_ARM, DIRECT_ARM, TRAINED_BASELINES

T_2DF = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom

# The positional unigram on the grid's split: the same for every run.
UNIGRAM = {"test/unigram_nll": 5.0, "test/unigram_acc": 0.3, "test/unigram_acc_onsets": 0.2}

# Hand-made test metrics per (arm, seed); "ref" is the reference arm, DIRECT_ARM the direct predictor.
BASE = {
    ("ref", 0): {"test/acc": 0.5, "test/recon_nll": 1.0, "greedy/repeat_rate": 0.30, "bach/repeat_rate": 0.02},
    ("ref", 1): {"test/acc": 1.0, "test/recon_nll": 1.2, "greedy/repeat_rate": 0.40, "bach/repeat_rate": 0.02},
    ("ref", 2): {"test/acc": 2.5, "test/recon_nll": 0.8, "greedy/repeat_rate": 0.35, "bach/repeat_rate": 0.02},
    ("new", 0): {"test/acc": 1.0, "test/recon_nll": 0.0, "greedy/repeat_rate": 0.10, "bach/repeat_rate": 0.02},
    ("new", 1): {"test/acc": 2.0, "test/recon_nll": 0.1, "greedy/repeat_rate": 0.25, "bach/repeat_rate": 0.02},
    ("new", 2): {"test/acc": 4.0, "test/recon_nll": -0.3, "greedy/repeat_rate": 0.20, "bach/repeat_rate": 0.02},
    (DIRECT_ARM, 0): {"test/acc": 0.5, "greedy/repeat_rate": 0.50, "bach/repeat_rate": 0.02},
    (DIRECT_ARM, 1): {"test/acc": 0.5, "greedy/repeat_rate": 0.50, "bach/repeat_rate": 0.02},
    (DIRECT_ARM, 2): {"test/acc": 1.0, "greedy/repeat_rate": 0.50, "bach/repeat_rate": 0.02},
}
# test/nll, chosen for hand-checkable comparisons (unigram NLL 5.0):
#   new − direct by seed = 1, 2, 3 (mean 2, sd 1); ref − direct = −5, −4, −3 (mean −4, sd 1);
#   gain vs unigram = 5 − nll: ref 3, 2.5, 2 (clearly beats); new −3, −3.5, −4 (clearly does not).
#   The autoregressive baseline (only in AUTOREGRESSIVE_FINAL): 4 on every seed.
NLL = {("ref", 0): 2.0, ("ref", 1): 2.5, ("ref", 2): 3.0, ("new", 0): 8.0, ("new", 1): 8.5, ("new", 2): 9.0,
       (DIRECT_ARM, 0): 7.0, (DIRECT_ARM, 1): 6.5, (DIRECT_ARM, 2): 6.0,
       **{(AUTOREGRESSIVE_ARM, seed): 4.0 for seed in range(3)}}


def _evaluator_keys(arm: str, seed: int) -> dict[str, float]:
    """The keys the evaluator adds to a run's test metrics; the latent diagnostics and latent-mode
    continuations only for arms with latents."""
    nll, gain = NLL[arm, seed], UNIGRAM["test/unigram_nll"] - NLL[arm, seed]
    keys = {"test/nll": nll, "test/acc_onsets": 0.1 * (seed + 1), **UNIGRAM, "test/gain_vs_unigram": gain,
            "test/gain_vs_unigram_ci_low": gain - 0.1, "test/gain_vs_unigram_ci_high": gain + 0.1}
    if arm not in TRAINED_BASELINES:
        keys.update({"test/active_units": 3.0 + seed, "test/kl_inputs": 0.5, "test/kl_target_full": 0.4,
                     "test/recon_full_term": 1.5, "latent/repeat_rate": 0.1})
    return keys


FINAL = {(arm, seed): {**metrics, **_evaluator_keys(arm, seed)} for (arm, seed), metrics in BASE.items()}
VAL_NLL = {"ref": 3.0, "new": 8.0, DIRECT_ARM: 6.5, AUTOREGRESSIVE_ARM: 4.0}  # after the second epoch (first: 7.0)
# FINAL with the autoregressive baseline's runs: test/acc 0.5 on every seed, no latents.
AUTOREGRESSIVE_FINAL = {**FINAL, **{(AUTOREGRESSIVE_ARM, seed): {
    "test/acc": 0.5, "greedy/repeat_rate": 0.45, "bach/repeat_rate": 0.02, **_evaluator_keys(AUTOREGRESSIVE_ARM, seed)}
    for seed in range(3)}}


def _metrics_rows(arm: str, seed: int) -> list[dict]:
    """A run's Lightning CSVLogger rows: a train row and a val row per epoch, NaN where not logged;
    the direct predictor logs no latent diagnostics."""
    rows = []
    for epoch, step in ((0, 9), (1, 19)):
        rows.append({"epoch": epoch, "step": step, "train/loss": 2.0 - epoch + seed})
        val = {"val/loss": 2.5 - epoch, "val/acc": 0.4 if epoch == 0 else (0.6 if arm == "ref" else 0.7),
               "val/nll": 7.0 if epoch == 0 else VAL_NLL[arm]}
        if arm not in TRAINED_BASELINES:
            val.update({"val/active_units": 4.0 - epoch + seed, "val/kl_inputs": 1.0 + epoch})
        rows.append({"epoch": epoch, "step": step, **val})
    return rows


def make_grid_folder(root: Path, final=FINAL, failed=(("new", 3, "RuntimeError: loss is NaN at step 7"),),
                     with_samples=True) -> Path:
    """A grid folder written by hand, as run_one and the trainer would leave it."""
    grid_dir = Path(root) / "toy"
    arms = list(dict.fromkeys(arm for arm, _ in final))
    (grid_dir).mkdir(parents=True)
    (grid_dir / "grid.json").write_text(json.dumps(dict(
        grid_version=1, grid="toy", profile="quick", reference="ref", arm_order=arms,
        arms={arm: dict(overrides=TRAINED_BASELINES.get(arm, {"loss.harmony_weights": [0.3 * (arm == "ref")] * 3}),
                        config={})
              for arm in arms})))
    for (arm, seed), metrics in final.items():
        run_dir = grid_dir / "runs" / f"{arm}{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps(dict(run_id=f"{arm}{seed}", grid="toy", arm=arm, seed=seed)))
        pd.DataFrame(_metrics_rows(arm, seed)).to_csv(run_dir / "metrics.csv", index=False)
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics))
        (run_dir / "result.json").write_text(json.dumps(dict(wandb_run_id=f"wandb-{arm}{seed}", steps=20,
                                                             train_seconds=1.5, eval_seconds=0.5)))
        if with_samples:
            (run_dir / "sample.mid").write_bytes(b"MThd")
            (run_dir / "sample.png").write_bytes(b"\x89PNG")
        (run_dir / "DONE").write_text("done\n")
    for arm, seed, reason in failed:
        run_dir = grid_dir / "runs" / f"{arm}{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps(dict(run_id=f"{arm}{seed}", grid="toy", arm=arm, seed=seed)))
        (run_dir / "FAILED").write_text(reason + "\n\nTraceback ...\n")
    return grid_dir


def test_student_t_critical_values_from_tables():
    """Two-sided 95 % values of Student's t from printed tables, for n values (df = n − 1)."""
    assert t_critical(3) == pytest.approx(T_2DF, abs=1e-8)
    assert t_critical(2) == pytest.approx(12.706204736174705, abs=1e-8)
    assert t_critical(5) == pytest.approx(2.7764451051977987, abs=1e-9)
    assert t_critical(31) == pytest.approx(2.0422724563012373, abs=1e-9)
    assert t_critical(3, confidence=0.9) == pytest.approx(2.919985580355516, abs=1e-9)
    assert math.isnan(t_critical(1))


def test_run_metrics_and_grid_aggregation_share_one_interval():
    """The evaluation's window intervals and the grid's seed intervals are one formula."""
    values = [48.5, 48.45, 48.77]
    mean, low, high = mean_ci(values)
    stats = mean_interval(values)
    assert (mean, low, high) == pytest.approx((stats["mean"], stats["ci_low"], stats["ci_high"]), abs=1e-12)


def test_mean_and_interval_by_hand():
    stats = mean_interval([1.0, 2.0, 3.0])
    assert stats["n"] == 3 and stats["mean"] == 2.0 and stats["std"] == pytest.approx(1.0)
    assert stats["ci_low"] == pytest.approx(2 - T_2DF / math.sqrt(3))
    assert stats["ci_high"] == pytest.approx(2 + T_2DF / math.sqrt(3))
    single = mean_interval([5.0])
    assert single["mean"] == 5.0 and math.isnan(single["ci_low"]) and math.isnan(single["std"])
    assert mean_interval([1.0, float("nan"), 3.0])["n"] == 2


def test_directions_table():
    assert metric_direction("test/acc") == "higher"
    assert metric_direction("test/acc_onsets") == "higher"
    assert metric_direction("val/recon_nll") == "lower"
    assert metric_direction("greedy/repeat_rate") == "closer"
    assert metric_direction("bach/repeat_rate") == "none"
    assert metric_direction("something/unknown") == "none"
    assert metric_direction("test/nll") == metric_direction("val/nll") == "lower"
    assert metric_direction("latent/repeat_rate") == "closer"
    assert metric_direction("test/gain_vs_unigram") == metric_direction("test/gain_vs_direct") == "higher"
    assert metric_direction("test/gain_vs_unigram_ci_low") == "none"  # within-run interval
    for metric in ("test/unigram_nll", "test/unigram_acc", "test/unigram_acc_onsets", "test/active_units",
                   "val/active_units", "test/kl_inputs", "test/kl_target_full", "test/kl_target_voice0",
                   "test/kl_target_subset", "val/kl_inputs", "test/recon_full_term"):
        assert metric_direction(metric) == "none", metric


def _final_frame(final=FINAL) -> pd.DataFrame:
    return pd.DataFrame([dict(run_id=f"{a}{s}", grid="toy", arm=a, seed=s, metric=m, value=v)
                         for (a, s), metrics in final.items() for m, v in metrics.items()])


def test_summary_by_hand():
    summary = summary_table(_final_frame()).set_index(["arm", "metric"])
    row = summary.loc[("new", "test/acc")]  # 1, 2, 4
    assert row["n"] == 3 and row["mean"] == pytest.approx(7 / 3)
    std = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert row["std"] == pytest.approx(std)
    assert row["ci_high"] - row["mean"] == pytest.approx(T_2DF * std / math.sqrt(3))


def test_paired_differences_by_hand():
    paired = paired_table(_final_frame(), "ref")
    assert set(paired["arm"]) == {"new", DIRECT_ARM} and "bach/repeat_rate" not in set(paired["metric"])
    # the direct predictor has no latents: no row for what it lacks, rather than an empty one
    assert not {"latent/repeat_rate", "test/kl_inputs"} & set(paired.loc[paired["arm"] == DIRECT_ARM, "metric"])
    paired = paired[paired["arm"] == "new"].set_index("metric")
    # test/acc: new − ref by seed = 0.5, 1.0, 1.5 → mean 1, std 0.5, interval includes 0
    acc = paired.loc["test/acc"]
    assert acc["mean_diff"] == pytest.approx(1.0) and acc["std_diff"] == pytest.approx(0.5)
    assert acc["ci_low"] == pytest.approx(1 - T_2DF * 0.5 / math.sqrt(3))
    assert acc["t"] == pytest.approx(T_2DF, abs=1e-8)
    assert not acc["excludes_zero"] and acc["better"] == "new"
    # test/recon_nll (lower is better): −1.0, −1.1, −1.1 → excludes 0, new better
    nll = paired.loc["test/recon_nll"]
    assert nll["mean_diff"] == pytest.approx(-3.2 / 3) and nll["excludes_zero"] and nll["better"] == "new"
    # greedy/repeat_rate: distance to Bach 0.02: new 0.08, 0.23, 0.18 vs ref 0.28, 0.38, 0.33 → −0.2, −0.15, −0.15
    repeat = paired.loc["greedy/repeat_rate"]
    assert repeat["direction"] == "closer" and repeat["compared"] == "distance to bach/repeat_rate"
    assert repeat["mean_diff"] == pytest.approx(-0.5 / 3) and repeat["better"] == "new" and repeat["excludes_zero"]


def test_pairs_only_matching_seeds():
    final = {key: value for key, value in FINAL.items() if key != ("ref", 2)}
    paired = paired_table(_final_frame(final), "ref").query("arm == 'new'").set_index("metric")
    assert paired.loc["test/acc", "n"] == 2  # seed 2 has no reference run
    assert paired.loc["test/acc", "mean_diff"] == pytest.approx(0.75)
    assert paired.loc["test/acc", "t"] == pytest.approx(12.706204736174705, abs=1e-8)


def test_aggregate_writes_tidy_tables(tmp_path):
    grid_dir = make_grid_folder(tmp_path)
    tables = aggregate(grid_dir)
    runs = pd.read_csv(grid_dir / "runs.csv")
    assert list(runs.columns) == ["run_id", "grid", "arm", "seed", "epoch", "step", "metric", "value"]
    # 2 epochs × (train/loss, val/loss, val/acc, val/nll, + val/active_units, val/kl_inputs with latents);
    # NaN cells dropped: 6 latent runs × 12 + 3 direct runs × 8
    assert len(runs) == 6 * 12 + 3 * 8
    assert not runs["value"].isna().any()
    assert set(runs["metric"]) == {"train/loss", "val/loss", "val/acc", "val/nll", "val/active_units", "val/kl_inputs"}
    final = pd.read_csv(grid_dir / "final.csv")
    latent_keys = 4 + 13  # BASE's 4 + the evaluator's 13
    direct_keys = 3 + 8  # no recon_nll; no active units, KL, recon term or latent/* continuations
    assert len(final) == 6 * latent_keys + 3 * direct_keys and set(final["run_id"]) == {f"{a}{s}" for a, s in FINAL}
    summary = pd.read_csv(grid_dir / "summary.csv")
    assert list(summary.columns) == ["arm", "metric", "n", "mean", "std", "ci_low", "ci_high"]
    assert len(summary) == 2 * latent_keys + direct_keys
    # every metric but bach/* for new; for the direct predictor only those it shares with ref
    assert len(pd.read_csv(grid_dir / "paired.csv")) == (latent_keys - 1) + (direct_keys - 1)
    status = pd.read_csv(grid_dir / "status.csv")
    assert len(status) == 10 and list(status["arm"][:3]) == ["ref"] * 3  # grid.json order
    failed = status[status["status"] == "failed"]
    assert list(failed["reason"]) == ["RuntimeError: loss is NaN at step 7"]
    assert set(tables) == {"runs", "final", "summary", "paired", "paired_direct", "paired_autoregressive", "status"}
    assert not list(grid_dir.glob(".*tmp"))  # atomic writes leave no temporary files


def test_paired_direct_by_hand(tmp_path):
    grid_dir = make_grid_folder(tmp_path)
    aggregate(grid_dir)
    direct = pd.read_csv(grid_dir / "paired_direct.csv")
    assert list(direct.columns) == PAIRED_COLUMNS and set(direct["reference"]) == {DIRECT_ARM}
    assert len(direct) == 2 * 3 and list(dict.fromkeys(direct["metric"])) == list(DIRECT_METRICS)  # 2 arms × 3
    rows = direct.set_index(["arm", "metric"])
    half = T_2DF * 1.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n with sd 1: 4.303 / 1.732 = 2.484
    # new − direct, test/nll by seed: 8 − 7, 8.5 − 6.5, 9 − 6 = 1, 2, 3 → mean 2, sd 1
    new = rows.loc[("new", "test/nll")]
    assert new["n"] == 3 and new["mean_diff"] == pytest.approx(2.0) and new["std_diff"] == pytest.approx(1.0)
    assert new["ci_low"] == pytest.approx(2 - 2.484, abs=1e-3) and new["ci_high"] == pytest.approx(2 + 2.484, abs=1e-3)
    assert new["ci_low"] == pytest.approx(2 - half) and new["ci_high"] == pytest.approx(2 + half)
    assert new["direction"] == "lower" and not new["excludes_zero"] and new["better"] == DIRECT_ARM
    # ref − direct: 2 − 7, 2.5 − 6.5, 3 − 6 = −5, −4, −3 → mean −4, sd 1: interval below 0, ref better
    ref = rows.loc[("ref", "test/nll")]
    assert ref["mean_diff"] == pytest.approx(-4.0) and ref["ci_high"] == pytest.approx(-4 + 2.484, abs=1e-3)
    assert ref["excludes_zero"] and ref["better"] == "ref"
    # test/acc: new − direct = 0.5, 1.5, 3.0 → mean 5/3
    assert rows.loc[("new", "test/acc"), "mean_diff"] == pytest.approx(5 / 3)


def test_paired_autoregressive_by_hand(tmp_path):
    grid_dir = make_grid_folder(tmp_path, final=AUTOREGRESSIVE_FINAL)
    aggregate(grid_dir)
    paired = pd.read_csv(grid_dir / "paired_autoregressive.csv")
    assert list(paired.columns) == PAIRED_COLUMNS and set(paired["reference"]) == {AUTOREGRESSIVE_ARM}
    # every other arm, the direct predictor included, on the same metrics as paired_direct.csv
    assert list(dict.fromkeys(paired["arm"])) == ["ref", "new", DIRECT_ARM] and len(paired) == 3 * 3
    assert list(dict.fromkeys(paired["metric"])) == list(DIRECT_METRICS)
    rows = paired.set_index(["arm", "metric"])
    half = T_2DF * 0.5 / math.sqrt(3)  # sd 0.5 in every NLL difference below: 4.303 · 0.5 / 1.732 = 1.242
    # test/nll − 4 by seed: ref −2, −1.5, −1 (mean −1.5); new 4, 4.5, 5 (mean 4.5); direct 3, 2.5, 2 (mean 2.5)
    for arm, mean, better in (("ref", -1.5, "ref"), ("new", 4.5, AUTOREGRESSIVE_ARM),
                              (DIRECT_ARM, 2.5, AUTOREGRESSIVE_ARM)):
        row = rows.loc[(arm, "test/nll")]
        assert row["n"] == 3 and row["mean_diff"] == pytest.approx(mean) and row["std_diff"] == pytest.approx(0.5)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((mean - half, mean + half))
        assert row["ci_low"] == pytest.approx(mean - 1.242, abs=1e-3)
        assert row["excludes_zero"] and row["better"] == better, arm
    # test/acc − 0.5: new 0.5, 1.5, 3.5 → mean 11/6; direct 0, 0, 0.5 → mean 1/6
    assert rows.loc[("new", "test/acc"), "mean_diff"] == pytest.approx(11 / 6)
    assert rows.loc[(DIRECT_ARM, "test/acc"), "mean_diff"] == pytest.approx(1 / 6)
    # the gain over the baseline (baseline − arm), as the reports show it: the interval flipped
    gains = nll_gains(paired)
    assert gains["ref"]["mean"] == pytest.approx(1.5)
    assert (gains["ref"]["ci_low"], gains["ref"]["ci_high"]) == pytest.approx((1.5 - half, 1.5 + half))
    assert gains["new"]["mean"] == pytest.approx(-4.5) and AUTOREGRESSIVE_ARM not in gains
    # and paired_direct.csv now also pairs the autoregressive baseline with the direct predictor: 4 − 7, …
    direct = pd.read_csv(grid_dir / "paired_direct.csv").set_index(["arm", "metric"])
    assert direct.loc[(AUTOREGRESSIVE_ARM, "test/nll"), "mean_diff"] == pytest.approx(-2.5)


def test_paired_direct_without_direct_runs_is_only_a_header(tmp_path):
    grid_dir = make_grid_folder(tmp_path, final={key: value for key, value in FINAL.items() if key[0] != DIRECT_ARM})
    tables = aggregate(grid_dir)
    assert tables["paired_direct"].empty and tables["paired_autoregressive"].empty
    assert (grid_dir / "paired_direct.csv").read_text().strip() == ",".join(PAIRED_COLUMNS)
    assert (grid_dir / "paired_autoregressive.csv").read_text().strip() == ",".join(PAIRED_COLUMNS)


def test_aggregate_command_line(tmp_path):
    grid_dir = make_grid_folder(tmp_path)
    result = subprocess.run([sys.executable, "ablations/aggregate.py", "--grid", "toy", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (grid_dir / "summary.csv").exists()
    missing = subprocess.run([sys.executable, "ablations/aggregate.py", "--grid", "nope", "--out", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "toy" in missing.stderr and "Traceback" not in missing.stderr


def test_aggregate_of_an_empty_grid(tmp_path):
    grid_dir = tmp_path / "empty"
    (grid_dir / "runs").mkdir(parents=True)
    tables = aggregate(grid_dir)
    assert all(table.empty for table in tables.values())
    assert (grid_dir / "summary.csv").read_text().startswith("arm,metric,n")


def test_a_metric_no_run_measured_is_left_out_of_the_pairs():
    """A statistic that is NaN in every run (no chorale long enough to continue) has no row, and
    the others are still paired."""
    frame = _final_frame()
    blank = frame[frame["metric"] == "test/acc"].assign(metric="greedy/distinct_pitches_per_voice", value=float("nan"))
    paired = paired_table(pd.concat([frame, blank], ignore_index=True), "ref")
    assert "greedy/distinct_pitches_per_voice" not in set(paired["metric"])
    assert paired.query("arm == 'new'").set_index("metric").loc["test/acc", "mean_diff"] == pytest.approx(1.0)
