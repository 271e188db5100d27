"""Aggregation of a grid folder: tidy tables and Student-t statistics checked by hand."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `ablations` is a folder of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from ablations.aggregate import (aggregate, mean_interval, metric_direction, paired_table, summary_table,
                                 t_critical, t_quantile)

T_2DF = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom

# Hand-made test metrics per (arm, seed); "ref" is the reference arm.
FINAL = {
    ("ref", 0): {"test/acc": 0.5, "test/recon_nll": 1.0, "greedy/repeat_rate": 0.30, "bach/repeat_rate": 0.02},
    ("ref", 1): {"test/acc": 1.0, "test/recon_nll": 1.2, "greedy/repeat_rate": 0.40, "bach/repeat_rate": 0.02},
    ("ref", 2): {"test/acc": 2.5, "test/recon_nll": 0.8, "greedy/repeat_rate": 0.35, "bach/repeat_rate": 0.02},
    ("new", 0): {"test/acc": 1.0, "test/recon_nll": 0.0, "greedy/repeat_rate": 0.10, "bach/repeat_rate": 0.02},
    ("new", 1): {"test/acc": 2.0, "test/recon_nll": 0.1, "greedy/repeat_rate": 0.25, "bach/repeat_rate": 0.02},
    ("new", 2): {"test/acc": 4.0, "test/recon_nll": -0.3, "greedy/repeat_rate": 0.20, "bach/repeat_rate": 0.02},
}


def make_grid_folder(root: Path, final=FINAL, failed=(("new", 3, "RuntimeError: loss is NaN at step 7"),),
                     with_samples=True) -> Path:
    """A grid folder written by hand, as run_one and the trainer would leave it."""
    grid_dir = Path(root) / "toy"
    arms = list(dict.fromkeys(arm for arm, _ in final))
    (grid_dir).mkdir(parents=True)
    (grid_dir / "grid.json").write_text(json.dumps(dict(
        grid_version=1, grid="toy", profile="quick", reference="ref", arm_order=arms,
        arms={arm: dict(overrides={"loss.harmony": arm == "ref"}, config={}) for arm in arms})))
    for (arm, seed), metrics in final.items():
        run_dir = grid_dir / "runs" / f"{arm}{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps(dict(run_id=f"{arm}{seed}", grid="toy", arm=arm, seed=seed)))
        # Lightning CSVLogger layout: train rows and val rows, NaN where not logged
        rows = [{"epoch": 0, "step": 9, "train/loss": 2.0 + seed, "val/loss": np.nan, "val/acc": np.nan},
                {"epoch": 0, "step": 9, "train/loss": np.nan, "val/loss": 2.5, "val/acc": 0.4},
                {"epoch": 1, "step": 19, "train/loss": 1.0 + seed, "val/loss": np.nan, "val/acc": np.nan},
                {"epoch": 1, "step": 19, "train/loss": np.nan, "val/loss": 1.5, "val/acc": 0.6 if arm == "ref" else 0.7}]
        pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
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


def test_student_t_quantiles():
    assert t_quantile(0.975, 2) == pytest.approx(T_2DF, abs=1e-8)
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736174705, abs=1e-8)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764451051977987, abs=1e-9)
    assert t_quantile(0.975, 30) == pytest.approx(2.0422724563012373, abs=1e-9)
    assert t_quantile(0.025, 2) == pytest.approx(-T_2DF, abs=1e-8)
    assert t_critical(3) == pytest.approx(T_2DF, abs=1e-8) and math.isnan(t_critical(1))


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
    paired = paired_table(_final_frame(), "ref").set_index("metric")
    assert set(paired["arm"]) == {"new"} and "bach/repeat_rate" not in paired.index
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
    paired = paired_table(_final_frame(final), "ref").set_index("metric")
    assert paired.loc["test/acc", "n"] == 2  # seed 2 has no reference run
    assert paired.loc["test/acc", "mean_diff"] == pytest.approx(0.75)
    assert paired.loc["test/acc", "t"] == pytest.approx(12.706204736174705, abs=1e-8)


def test_aggregate_writes_tidy_tables(tmp_path):
    grid_dir = make_grid_folder(tmp_path)
    tables = aggregate(grid_dir)
    runs = pd.read_csv(grid_dir / "runs.csv")
    assert list(runs.columns) == ["run_id", "grid", "arm", "seed", "epoch", "step", "metric", "value"]
    assert len(runs) == 6 * 6  # 6 runs × (2 train/loss + 2 val/loss + 2 val/acc); NaN cells dropped
    assert not runs["value"].isna().any()
    assert set(runs["metric"]) == {"train/loss", "val/loss", "val/acc"}
    final = pd.read_csv(grid_dir / "final.csv")
    assert len(final) == 6 * 4 and set(final["run_id"]) == {f"{a}{s}" for a, s in FINAL}
    summary = pd.read_csv(grid_dir / "summary.csv")
    assert list(summary.columns) == ["arm", "metric", "n", "mean", "std", "ci_low", "ci_high"]
    assert len(summary) == 2 * 4
    assert len(pd.read_csv(grid_dir / "paired.csv")) == 3  # acc, nll, repeat_rate (bach/* is the reference)
    status = pd.read_csv(grid_dir / "status.csv")
    assert len(status) == 7 and list(status["arm"][:3]) == ["ref"] * 3  # grid.json order
    failed = status[status["status"] == "failed"]
    assert list(failed["reason"]) == ["RuntimeError: loss is NaN at step 7"]
    assert set(tables) == {"runs", "final", "summary", "paired", "status"}
    assert not list(grid_dir.glob(".*tmp"))  # atomic writes leave no temporary files


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
