"""Ablation grids, resume/skip, failures, launchers and bad input, with a fake trainer.

The fake trainer (:func:`fake_train`) follows the contract of ``rmvae.train.train``: it
resumes from ``checkpoints/last.ckpt``, writes a Lightning-style ``metrics.csv`` and
returns the checkpoint paths and a W&B id. Its values depend only on the config, so an
interrupted-then-resumed grid gives the same tables as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

from ablations.grids import (AUTOREGRESSIVE_ARM, BASELINE, BASELINE_ARM, DIRECT_ARM, DOSE_WEIGHTS, GRID_CHOICES, GRIDS,
                             PROFILES, SHARED_KEYS, TRAINED_BASELINES, expand_grid, experiment_key, run_id,
                             toggle_tags)
from ablations.run import main
from ablations.runfolder import run_status
from ablations.runner import run_one
from rmvae.config import Config, ConfigError, LossConfig, apply_overrides
from rmvae.profiles import THESIS_DESIGN
from rmvae.files import atomic_write_json, atomic_write_text

PNG_1X1 = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


# ---------------------------------------------------------------- fake trainer / evaluator


def _log(line: str) -> None:
    path = os.environ.get("FAKE_TRAIN_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


def _loss(config: Config, step: int) -> float:
    harmony = 0.05 if any(config.loss.harmony_weights) else 0.0
    return 2.0 * math.exp(-step / 4) + 0.1 * config.train.seed + harmony


def fake_train(config: Config, out_dir: Path) -> dict:
    """Contract of rmvae.train.train: resume from last.ckpt, metrics.csv, checkpoints, W&B id."""
    out_dir = Path(out_dir)
    rid = run_id(config)
    last = out_dir / "checkpoints" / "last.ckpt"
    start = json.loads(last.read_text())["step"] if last.exists() else 0
    _log(f"{rid} start {start}")
    if config.train.wandb_name in os.environ.get("FAKE_FAIL", "").split(","):
        raise RuntimeError("loss is NaN at step 3 (TrainingDiverged)")
    total = config.train.max_steps
    delay = float(os.environ.get("FAKE_STEP_SECONDS", "0"))
    atomic_write_text(out_dir / "config.json", config.to_json())
    for step in range(start + 1, total + 1):
        time.sleep(delay)
        rows = []
        for s in range(1, step + 1):
            epoch = (s - 1) // 4
            rows.append({"epoch": epoch, "step": s, "train/loss": _loss(config, s), "train/kl": 0.1 * s})
            if s % 4 == 0 or s == total:
                rows.append({"epoch": epoch, "step": s, "val/loss": _loss(config, s) + 0.2,
                             "val/kl": 0.1 * s, "val/acc": 0.5 + 0.01 * s, "val/harmony": 0.1 - 0.001 * s})
        atomic_write_text(out_dir / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
        atomic_write_json(last, {"step": step})
    best = out_dir / "checkpoints" / "best.ckpt"
    atomic_write_json(best, {"step": total})
    _log(f"{rid} end {total}")
    return {"best_checkpoint": str(best), "last_checkpoint": str(last), "wandb_run_id": f"wb-{rid}",
            "steps": total}


def fake_evaluate(checkpoint, split="test", seed=0, sample_path=None) -> dict:
    """Contract of rmvae.evaluation.evaluate_checkpoint: flat metrics, sample .mid + .png."""
    config = Config.from_dict(json.loads((Path(checkpoint).parent.parent / "config.json").read_text()))
    on = 1.0 if any(config.loss.harmony_weights) else 0.0
    rpoe = 1.0 if config.model.rpoe else 0.0
    if sample_path is not None:
        Path(sample_path).write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x04\x01\xe0")
        Path(sample_path).with_suffix(".png").write_bytes(PNG_1X1)
    return {"test/acc": 0.70 + 0.02 * on + 0.01 * seed, "test/acc_onsets": 0.3 + 0.01 * seed + 0.01 * rpoe,
            "test/recon_nll": 1.0 - 0.1 * on + 0.05 * seed, "test/harmony": 0.05 + 0.01 * seed - 0.02 * on,
            "greedy/repeat_rate": 0.4 - 0.1 * on + 0.01 * seed, "bach/repeat_rate": 0.02, "bach/harmony": 0.09}


FAKE_RUN = functools.partial(run_one, train_fn=fake_train, evaluate_fn=fake_evaluate)
TINY = ["--set", "train.max_steps=6", "--no-wandb", "--no-report"]


def _train_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def train_log(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "train.log"
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(path))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_STEP_SECONDS", raising=False)
    return path


# ---------------------------------------------------------------- grids are data


@pytest.mark.parametrize("grid", GRID_CHOICES)
@pytest.mark.parametrize("profile", list(PROFILES))
def test_grid_expands_to_arms_times_seeds_with_equal_budgets(grid, profile):
    plan = expand_grid(grid, profile, seeds=3)
    assert len(plan.runs) == len(plan.arms) * 3
    assert plan.reference in plan.arms
    for arm in plan.arms:
        assert sorted(r.seed for r in plan.runs if r.arm == arm) == [0, 1, 2]
    for key in SHARED_KEYS:  # same split and budget in every run
        section, name = key.split(".")
        assert len({json.dumps(getattr(getattr(r.config, section), name)) for r in plan.runs}) == 1, key
    assert all(r.config.train.seed == r.seed for r in plan.runs)
    assert len({r.run_id for r in plan.runs}) == len(plan.runs)
    # an arm differs from the reference arm only in the keys it overrides (and the labels)
    reference = {r.seed: r.config for r in plan.runs if r.arm == plan.reference}
    for r in plan.runs:
        changed = _changed_keys(experiment_key(reference[r.seed]), experiment_key(r.config))
        assert changed <= set(plan.arms[r.arm]) | set(plan.arms[plan.reference]), (r.arm, changed)


def _changed_keys(a: dict, b: dict) -> set[str]:
    return {f"{s}.{k}" for s in a for k in a[s] if a[s][k] != b[s][k]}


def test_all_grid_runs_the_baseline_once():
    for profile in PROFILES:
        plan = expand_grid("all", profile, seeds=3)
        keys = {arm: json.dumps(experiment_key(next(r.config for r in plan.runs if r.arm == arm and r.seed == 0)),
                                sort_keys=True) for arm in plan.arms}
        assert len(set(keys.values())) == len(keys)  # no two arms are the same experiment
        assert plan.reference == BASELINE_ARM and list(plan.arms)[0] == BASELINE_ARM
        on_off = {name: arms for name, arms in GRIDS.items() if name not in DOSE_WEIGHTS}
        every_arm = {arm for arms in on_off.values() for arm in arms}
        assert not {DIRECT_ARM, AUTOREGRESSIVE_ARM} & every_arm
        collapsed = every_arm - set(plan.arms)
        assert len(collapsed) == len(on_off)  # each grid's baseline arm became "baseline"
        # ...plus the direct predictor and the autoregressive baseline, trained once beside the arms, last
        assert len(plan.arms) == len(every_arm) - len(on_off) + 1 + 2
        assert list(plan.arms)[-2:] == [DIRECT_ARM, AUTOREGRESSIVE_ARM]
        assert plan.arms[DIRECT_ARM] == {"model.kind": "direct"}
        assert len(plan.runs) == len(plan.arms) * 3
    quick = expand_grid("all", "quick")
    assert "small" not in quick.arms and "medium" in quick.arms  # quick baseline is small
    assert "medium" not in expand_grid("all", "full").arms


def test_baseline_is_the_spec_default():
    plan = expand_grid("harmony", "full")
    config = next(r.config for r in plan.runs if r.arm == plan.reference)
    assert (config.data.encoding, config.model.encoder, config.data.transpose, config.model.size) == \
        ("mono", "fc", True, "medium")
    # the default (VRNN-style) design: experts into the temporal LSTM, temporal priors, decoder context
    assert (config.model.kind, config.model.temporal_input, config.model.latent_prior) == \
        ("rmvae", "experts", "temporal")
    assert config.model.decoder_context and config.loss.target_posterior
    assert config.model.rpoe and config.loss.scale_weight > 0 and config.loss.rhythm_weight > 0
    assert config.loss.harmony_weights == LossConfig().harmony_weights
    assert (config.data.n_measures, config.data.offset) == (8, 1)
    for key, value in BASELINE.items():  # the baseline is what Config() defaults to
        section, name = key.split(".")
        assert getattr(getattr(Config(), section), name) == value, key
    quick = next(r.config for r in expand_grid("harmony", "quick").runs)
    assert quick.model.size == "small"
    for key, value in PROFILES["quick"].items():  # the quick profile's budget and model, as written
        section, name = key.split(".")
        assert getattr(getattr(quick, section), name) == value, key
    assert expand_grid("size", "quick").reference == "small"
    assert expand_grid("size", "full").reference == "medium"
    assert set(BASELINE) <= set(expand_grid("rpoe").base_overrides)
    # RPoE only exists under N(0, I) priors: the rpoe grid's baseline arm is the temporal prior
    rpoe = expand_grid("rpoe", "full")
    assert rpoe.reference == "temporal_prior"
    for arm, flag in (("rpoe_on", True), ("rpoe_off", False)):
        arm_config = next(r.config for r in rpoe.runs if r.arm == arm)
        assert (arm_config.model.latent_prior, arm_config.model.rpoe) == ("standard", flag)
    # the objective grid: the default design against the thesis's (THESIS_DESIGN)
    objective = expand_grid("objective", "full")
    assert objective.reference == "default_design"
    thesis = next(r.config for r in objective.runs if r.arm == "thesis_design")
    for key, value in THESIS_DESIGN.items():  # all of it but the learning rate, which the arms share
        section, name = key.split(".")
        assert getattr(getattr(thesis, section), name) == (value if key not in SHARED_KEYS else BASELINE[key]), key
    default = next(r.config for r in objective.runs if r.arm == "default_design")
    assert THESIS_DESIGN["train.lr"] == 1e-3 and thesis.train.lr == default.train.lr == BASELINE["train.lr"]
    assert (thesis.model.encoder, thesis.model.temporal_input, thesis.model.latent_prior) == \
        ("rnn", "latents", "standard")
    assert not thesis.model.decoder_context and not thesis.loss.target_posterior
    # ...and the thesis's objective and temporal model on the default's encoders
    thesis_objective = next(r.config for r in objective.runs if r.arm == "thesis_objective")
    assert _changed_keys(experiment_key(thesis), experiment_key(thesis_objective)) == {"model.encoder"}
    assert thesis_objective.model.encoder == default.model.encoder == BASELINE["model.encoder"]
    # the direct predictor is the baseline without latents, nothing else changed
    direct = next(r.config for r in plan.runs if r.arm == DIRECT_ARM and r.seed == 0)
    assert _changed_keys(experiment_key(config), experiment_key(direct)) == {"model.kind"}
    assert direct.model.kind == "direct"


def test_every_grid_trains_the_autoregressive_baseline_beside_its_arms():
    """Same seeds, split and budget as the arms; the baseline's config is the base's with only the
    model kind and a named decoder changed, so an arm's decoder never leaks into it."""
    for grid in GRID_CHOICES:
        plan = expand_grid(grid, "quick", seeds=2)
        assert plan.arms[AUTOREGRESSIVE_ARM] == {"model.kind": "autoregressive", "model.measure_decoder": "factorised"}
        runs = [r for r in plan.runs if r.arm == AUTOREGRESSIVE_ARM]
        assert [r.seed for r in runs] == [0, 1] and runs[0].config.model.kind == "autoregressive"
        base = apply_overrides(Config(), {**plan.base_overrides, "train.seed": 0})
        assert _changed_keys(experiment_key(base), experiment_key(runs[0].config)) <= \
            {"model.kind", "model.measure_decoder"}, grid
        reference = next(r.config for r in plan.runs if r.arm == plan.reference and r.seed == 0)
        for key in SHARED_KEYS:
            section, name = key.split(".")
            assert getattr(getattr(runs[0].config, section), name) == getattr(getattr(reference, section), name)
        assert len({r.run_id for r in plan.runs}) == len(plan.runs)


def test_decoder_grid_names_the_decoder_and_free_bits_in_every_arm_and_is_in_all(tmp_path, capsys):
    plan = expand_grid("decoder", "quick", seeds=1)
    assert GRIDS["decoder"] == {
        "factorised": {"model.measure_decoder": "factorised", "loss.free_bits": 0.0},
        "autoregressive": {"model.measure_decoder": "autoregressive", "loss.free_bits": 0.25},
        "autoregressive_no_free_bits": {"model.measure_decoder": "autoregressive", "loss.free_bits": 0.0}}
    assert plan.reference == "autoregressive"  # the default (BASELINE): differences are arm − autoregressive
    decoders = {r.arm: (r.config.model.measure_decoder, r.config.loss.free_bits) for r in plan.runs
                if r.arm in GRIDS["decoder"]}
    assert decoders == {"factorised": ("factorised", 0.0), "autoregressive": ("autoregressive", 0.25),
                        "autoregressive_no_free_bits": ("autoregressive", 0.0)}
    baselines = {r.arm: r.config.model.measure_decoder for r in plan.runs if r.arm not in GRIDS["decoder"]}
    assert baselines == {DIRECT_ARM: "autoregressive", AUTOREGRESSIVE_ARM: "factorised"}
    all_arms = expand_grid("all", "quick", seeds=1).arms
    # in `all` the arm equal to the baseline is the baseline's arm; the other two are arms of their own
    assert "decoder" in GRID_CHOICES and {"factorised", "autoregressive_no_free_bits"} <= set(all_arms)
    assert "autoregressive" not in all_arms
    assert main(["--grid", "decoder", "--out", str(tmp_path), "--dry-run", "--seeds", "1"]) == 0
    assert AUTOREGRESSIVE_ARM in capsys.readouterr().out and not any(tmp_path.iterdir())


def test_run_id_is_a_stable_hash_that_ignores_wandb_labels():
    config = apply_overrides(Config(), {"train.seed": 1})
    labelled = dataclasses.replace(config, train=dataclasses.replace(
        config.train, wandb=False, wandb_name="x/seed1", wandb_group="g", wandb_tags=("a",)))
    assert run_id(config) == run_id(labelled) and len(run_id(config)) == 10
    assert run_id(apply_overrides(config, {"train.seed": 2})) != run_id(config)
    assert expand_grid("rpoe", wandb=False).runs[0].run_id == expand_grid("rpoe", wandb=True).runs[0].run_id


def test_wandb_labels_and_tags():
    plan = expand_grid("harmony", "quick", seeds=2)
    run = next(r for r in plan.runs if r.arm == "harmony_off" and r.seed == 1)
    train = run.config.train
    assert (train.wandb_group, train.wandb_name) == ("harmony", "harmony_off/seed1")
    assert {"harmony:off", "rpoe:on", "size:small", "transpose:on", "scale_rhythm:on"} <= set(train.wandb_tags)
    off = {"loss.scale_weight": 0, "loss.rhythm_weight": 0}
    assert "scale_rhythm:off" in toggle_tags(apply_overrides(Config(), off))
    assert "scale_rhythm:scale:off,rhythm:on" in toggle_tags(apply_overrides(Config(), {"loss.scale_weight": 0}))
    # the on arms state the baseline's weights: they are the baseline
    assert expand_grid("harmony").arms["harmony_on"] == {"loss.harmony_weights": BASELINE["loss.harmony_weights"]}
    assert expand_grid("harmony", devices=4).runs[0].config.train.devices == 4


def test_bad_grid_profile_and_override_raise_one_clear_error():
    with pytest.raises(ConfigError, match="transpose, size"):
        expand_grid("nope")
    with pytest.raises(ConfigError, match="unknown profile 'medium'; choose one of quick, cpu, full"):
        expand_grid("harmony", "medium")
    assert list(PROFILES) == ["quick", "cpu", "full"]
    with pytest.raises(ConfigError, match="model.nope"):
        expand_grid("harmony", overrides=["model.nope=1"])
    with pytest.raises(ConfigError, match="varies"):
        expand_grid("harmony", overrides=["loss.harmony_weights=0,0,0"])


# ---------------------------------------------------------------- run.py with a fake trainer


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys):
    assert main(["--grid", "harmony", "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    plan = expand_grid("harmony")
    for run in plan.runs:
        assert run.run_id in out
    assert "loss.harmony_weights=(0.0, 0.0, 0.0)" in out and "train.seed=2" in out and "harmony_off" in out
    assert not any(tmp_path.iterdir())


def test_grid_runs_once_and_second_call_trains_nothing(tmp_path, train_log):
    argv = ["--grid", "harmony", "--out", str(tmp_path), "--set", "train.max_steps=6", "--no-wandb"]
    assert main(argv, run_fn=FAKE_RUN) == 0
    runs = expand_grid("harmony", overrides=["train.max_steps=6"], wandb=False).runs
    assert len(runs) == 12  # 2 arms, the direct predictor and the autoregressive baseline, 3 seeds each
    assert len([l for l in _train_log(train_log) if " start " in l]) == 12
    grid_dir = tmp_path / "harmony"
    for run in runs:
        run_dir = run.run_dir(grid_dir)
        for name in ("config.json", "run.json", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                     "test_metrics.json", "result.json", "DONE", "sample.mid", "sample.png"):
            assert (run_dir / name).exists(), name
        assert Config.from_dict(json.loads((run_dir / "config.json").read_text())) == run.config
    for table in ("runs", "final", "summary", "paired", "paired_direct", "paired_autoregressive", "status"):
        assert (grid_dir / f"{table}.csv").exists()
    assert (grid_dir / "report.md").exists() and (grid_dir / "grid.json").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in (grid_dir / "runs").rglob("DONE")}
    assert len(mtimes) == 12

    assert main(argv, run_fn=FAKE_RUN) == 0  # same command again: nothing trains
    assert len([l for l in _train_log(train_log) if " start " in l]) == 12
    assert mtimes == {p: p.stat().st_mtime_ns for p in (grid_dir / "runs").rglob("DONE")}
    status = pd.read_csv(grid_dir / "status.csv")
    assert (status["status"] == "done").all() and status["wandb_run_id"].str.startswith("wb-").all()
    assert sorted(status["arm"].value_counts().items()) == \
        [(AUTOREGRESSIVE_ARM, 3), (DIRECT_ARM, 3), ("harmony_off", 3), ("harmony_on", 3)]


def test_failed_run_is_recorded_and_grid_goes_on(tmp_path, train_log, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "harmony_off/seed1")
    argv = ["--grid", "harmony", "--out", str(tmp_path), *TINY]
    assert main([*argv[:-1]], run_fn=FAKE_RUN) == 1  # with the report
    grid_dir = tmp_path / "harmony"
    status = pd.read_csv(grid_dir / "status.csv")
    failed = status[status["status"] == "failed"]
    assert list(failed["arm"]) == ["harmony_off"] and list(failed["seed"]) == [1]
    assert "NaN" in failed["reason"].iloc[0]
    assert (status["status"] == "done").sum() == 11  # the other 5 runs of the arms and 3 of each trained baseline
    failed_dir = grid_dir / "runs" / failed["run_id"].iloc[0]
    assert (failed_dir / "FAILED").exists() and not (failed_dir / "DONE").exists()
    report = (grid_dir / "report.md").read_text()
    assert failed["run_id"].iloc[0] in report and "NaN" in report
    paired = pd.read_csv(grid_dir / "paired.csv")
    assert set(paired["arm"]) == {"harmony_off", *TRAINED_BASELINES} and (paired["reference"] == "harmony_on").all()
    assert (paired.loc[paired["arm"] == "harmony_off", "n"] == 2).all()  # seed 1 has no pair
    assert (paired.loc[paired["arm"] == DIRECT_ARM, "n"] == 3).all()  # the direct predictor has all three
    for baseline, table in ((DIRECT_ARM, "paired_direct"), (AUTOREGRESSIVE_ARM, "paired_autoregressive")):
        against = pd.read_csv(grid_dir / f"{table}.csv")
        assert set(against["arm"]) == {"harmony_on", "harmony_off", *TRAINED_BASELINES} - {baseline}, table
        assert (against["reference"] == baseline).all()
        assert (against.loc[against["arm"] == "harmony_off", "n"] == 2).all()  # seed 1 has no pair here either
        assert (against.loc[against["arm"] == "harmony_on", "n"] == 3).all()

    starts = len(_train_log(train_log))
    assert main(argv, run_fn=FAKE_RUN) == 1  # a failed run is not retried by default
    assert len(_train_log(train_log)) == starts
    monkeypatch.setenv("FAKE_FAIL", "")
    assert main([*argv, "--retry-failed"], run_fn=FAKE_RUN) == 0
    assert run_status(failed_dir) == "done" and not (failed_dir / "FAILED").exists()


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path, train_log):
    config = apply_overrides(Config(), {"train.max_steps": 6, "train.wandb": False})
    run_dir = tmp_path / "run"
    atomic_write_json(run_dir / "checkpoints" / "last.ckpt", {"step": 4})  # as if killed at step 4
    assert run_status(run_dir) == "interrupted"
    outcome = FAKE_RUN(config, run_dir, {"run_id": "r", "arm": "a", "seed": 0})
    assert outcome["status"] == "done"
    assert _train_log(train_log)[0].endswith("start 4")
    assert FAKE_RUN(config, run_dir)["status"] == "skipped"


def test_evaluation_failure_does_not_retrain(tmp_path, train_log):
    config = apply_overrides(Config(), {"train.max_steps": 3, "train.wandb": False})

    def broken_evaluate(*args, **kwargs):
        raise ValueError("evaluation crashed")

    outcome = run_one(config, tmp_path, train_fn=fake_train, evaluate_fn=broken_evaluate)
    assert outcome["status"] == "failed" and "evaluation crashed" in (tmp_path / "FAILED").read_text()
    assert FAKE_RUN(config, tmp_path)["status"] == "done"
    assert len([l for l in _train_log(train_log) if " start " in l]) == 1


def _run_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("args, expected", [
    (["--grid", "nope"], "choose from"),
    (["--grid", "harmony", "--profile", "huge"], "choose from"),
    (["--grid", "harmony", "--set", "model.nope=3"], "model.nope"),
    (["--grid", "harmony", "--set", "loss.harmony_weights=0,0,0"], "varies"),
])
def test_bad_input_gives_one_message_and_exit_2(tmp_path, args, expected):
    result = _run_cli("ablations/run.py", *args, "--out", str(tmp_path), "--dry-run")
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_grid_version_mismatch_stops_and_deletes_nothing(tmp_path, train_log, capsys):
    argv = ["--grid", "rpoe", "--out", str(tmp_path), "--seeds", "1", *TINY]
    assert main(argv, run_fn=FAKE_RUN) == 0
    grid_json = tmp_path / "rpoe" / "grid.json"
    stored = json.loads(grid_json.read_text())
    stored["grid_version"] = 0
    grid_json.write_text(json.dumps(stored))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(argv, run_fn=FAKE_RUN) == 2
    error = capsys.readouterr().err
    assert "different grid definition" in error and "nothing was deleted" in error
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # another profile into the same folder is a different definition too
    assert main(["--grid", "rpoe", "--out", str(tmp_path), "--profile", "full", "--dry-run"]) == 2


def test_script_runs_from_repo_root(tmp_path):
    result = _run_cli("ablations/run.py", "--grid", "all", "--seeds", "2", "--out", str(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "baseline" in result.stdout and "rpoe_off" in result.stdout
    assert all(run.run_id in result.stdout for run in expand_grid("all", seeds=2).runs)


def test_ddp_peer_process_joins_the_first_unfinished_run(tmp_path, train_log, monkeypatch):
    """Lightning re-executes the command for DDP ranks > 0: the peer only trains, writes nothing."""
    argv = ["--grid", "rpoe", "--out", str(tmp_path), "--seeds", "1", "--devices", "2", *TINY]
    runs = expand_grid("rpoe", seeds=1, devices=2, overrides=["train.max_steps=6"], wandb=False).runs
    atomic_write_text(runs[0].run_dir(tmp_path / "rpoe") / "DONE", "done\n")  # first run finished
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(argv, run_fn=FAKE_RUN) == 0
    assert [l.split()[0] for l in _train_log(train_log)] == [runs[1].run_id] * 2  # start + end
    assert not (tmp_path / "rpoe" / "grid.json").exists()
    assert not (runs[1].run_dir(tmp_path / "rpoe") / "DONE").exists()
    monkeypatch.delenv("LOCAL_RANK")
    assert main([*argv, "--launcher", "local-parallel"], run_fn=FAKE_RUN) == 2


# ---------------------------------------------------------------- launchers


def test_local_parallel_launcher(tmp_path, train_log):
    argv = ["--grid", "rpoe", "--out", str(tmp_path), "--launcher", "local-parallel", "--jobs", "2", "--seeds", "2",
            *TINY]
    assert main(argv, run_fn=FAKE_RUN) == 0
    status = pd.read_csv(tmp_path / "rpoe" / "status.csv")
    # 3 arms (temporal_prior, rpoe_on, rpoe_off) and the two trained baselines, 2 seeds each
    assert len(status) == 10 and (status["status"] == "done").all()
    assert set(status["arm"]) == {"temporal_prior", "rpoe_on", "rpoe_off", *TRAINED_BASELINES}
    assert len([l for l in _train_log(train_log) if " start " in l]) == 10


def test_slurm_launcher_in_submitit_debug_mode(tmp_path, train_log):
    argv = ["--grid", "rpoe", "--out", str(tmp_path), "--launcher", "slurm", "--slurm-cluster", "debug",
            "--seeds", "2", *TINY]
    assert main(argv, run_fn=FAKE_RUN) == 0
    status = pd.read_csv(tmp_path / "rpoe" / "status.csv")
    # 3 arms (temporal_prior, rpoe_on, rpoe_off) and the two trained baselines, 2 seeds each
    assert len(status) == 10 and (status["status"] == "done").all()
    assert set(status["arm"]) == {"temporal_prior", "rpoe_on", "rpoe_off", *TRAINED_BASELINES}
    assert main(argv, run_fn=FAKE_RUN) == 0
    assert len([l for l in _train_log(train_log) if " start " in l]) == 10


def test_submitit_job_requeues_itself():
    from submitit.helpers import Checkpointable, DelayedSubmission

    from ablations.launchers import SubmititRun

    job = SubmititRun(FAKE_RUN)
    assert isinstance(job, Checkpointable)
    delayed = job.checkpoint({"train": {}}, "/tmp/run", {"run_id": "x"})
    assert isinstance(delayed, DelayedSubmission)
    assert delayed.function is job and delayed.args == ({"train": {}}, "/tmp/run", {"run_id": "x"})


@pytest.mark.slow
def test_submitit_timeout_requeues_and_resumes(tmp_path, train_log, monkeypatch):
    """A local submitit job that times out is requeued and resumes from last.ckpt."""
    from submitit.local.local import LocalExecutor

    from ablations.launchers import SubmititRun

    monkeypatch.setenv("FAKE_STEP_SECONDS", "1.5")  # 8 steps + start-up > the 10 s time limit
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS)]))
    config = apply_overrides(Config(), {"train.max_steps": 8, "train.wandb": False})
    executor = LocalExecutor(tmp_path / "submitit", max_num_timeout=6)
    executor.update_parameters(timeout_min=10 / 60, signal_delay_s=2)
    job = executor.submit(SubmititRun(FAKE_RUN), config.to_dict(), str(tmp_path / "run"), {"run_id": "r"})
    outcome = job.result()
    assert outcome["status"] == "done"
    starts = [int(l.split()[-1]) for l in _train_log(train_log) if " start " in l]
    assert len(starts) >= 2 and starts[0] == 0 and starts[1] > 0  # second job resumed


def test_kill_and_resume_trains_only_missing_runs(tmp_path, train_log):
    """Kill the grid after the first run is DONE (and the second has a checkpoint); rerun."""
    out, clean = tmp_path / "out", tmp_path / "clean"
    code = ("import sys; sys.path[:0] = [{repo!r}, {tests!r}]; import test_ablations as t; "
            "from ablations.run import main; sys.exit(main(sys.argv[1:], run_fn=t.FAKE_RUN))"
            ).format(repo=str(REPO), tests=str(TESTS))
    argv = ["--grid", "harmony", "--seeds", "2", "--set", "train.max_steps=8", "--no-wandb", "--no-report"]
    process = subprocess.Popen([sys.executable, "-c", code, *argv, "--out", str(out)], cwd=REPO,
                               env={**os.environ, "FAKE_STEP_SECONDS": "0.05"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = expand_grid("harmony", seeds=2, overrides=["train.max_steps=8"], wandb=False).runs
    first, second = (r.run_dir(out / "harmony") for r in runs[:2])
    deadline = time.time() + 60
    while not ((first / "DONE").exists() and (second / "checkpoints" / "last.ckpt").exists()):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert run_status(second) == "interrupted"

    assert subprocess.run([sys.executable, "-c", code, *argv, "--out", str(out)], cwd=REPO).returncode == 0
    starts = [l.split() for l in _train_log(train_log) if " start " in l]
    per_run = {}
    for rid, _, step in starts:
        per_run.setdefault(rid, []).append(int(step))
    assert per_run[runs[0].run_id] == [0]  # finished run never trained again
    assert per_run[runs[1].run_id][0] == 0 and per_run[runs[1].run_id][1] > 0  # resumed from last.ckpt
    assert all(len(per_run[r.run_id]) == 1 for r in runs[2:])

    assert subprocess.run([sys.executable, "-c", code, *argv, "--out", str(clean)], cwd=REPO).returncode == 0
    for table in ("summary", "paired", "final"):
        pd.testing.assert_frame_equal(pd.read_csv(out / "harmony" / f"{table}.csv"),
                                      pd.read_csv(clean / "harmony" / f"{table}.csv"))


# ---------------------------------------------------------------- real trainer + evaluator (slow)

REAL_ARGV = ["--grid", "harmony", "--seeds", "2", "--no-wandb", "--launcher", "local", "--threads", "1",
             "--set", "train.max_steps=6", "--set", "data.batch_size=32", "--set", "train.val_every_n_epochs=1",
             "--set", "data.max_pieces=4", "--set", "train.limit_val_batches=2"]


def _real_stack_available() -> bool:
    """Whether the trainer and evaluator exist (found, not imported: importing torch is slow)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("rmvae.train", "rmvae.evaluation"))


real_stack = pytest.mark.skipif(not _real_stack_available(), reason="rmvae.train / rmvae.evaluation not available")


@pytest.fixture(scope="module")
def real_grid(tmp_path_factory):
    """The tiny real harmony grid (2 arms × 2 seeds, 2 steps), run once without interruption."""
    out = tmp_path_factory.mktemp("real")
    result = _run_cli("ablations/run.py", *REAL_ARGV, "--out", str(out), timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "harmony"


@pytest.mark.slow
@real_stack
def test_real_tiny_grid_end_to_end(real_grid):
    arms = ("harmony_on", "harmony_off", *TRAINED_BASELINES)
    status = pd.read_csv(real_grid / "status.csv")
    assert len(status) == 2 * len(arms) and (status["status"] == "done").all()
    runs = pd.read_csv(real_grid / "runs.csv")
    assert set(runs["run_id"]) == set(status["run_id"]) and not runs["value"].isna().any()
    final = pd.read_csv(real_grid / "final.csv")
    for metric in ("test/acc", "test/nll", "test/unigram_nll", "test/gain_vs_unigram"):
        assert (final["metric"] == metric).sum() == 2 * len(arms), metric
    # the positional unigram is the same table for every run of the grid (same split and targets)
    assert final[final["metric"] == "test/unigram_nll"]["value"].nunique() == 1
    summary = pd.read_csv(real_grid / "summary.csv")
    # every value both seeds have; a statistic of no notes is NaN in every seed (n = 0: a 6-step
    # autoregressive baseline may continue greedily with holds and rests only)
    assert set(summary["arm"]) == set(arms) and (summary.loc[summary["n"] > 0, "n"] == 2).all()
    paired = pd.read_csv(real_grid / "paired.csv")
    assert set(paired["arm"]) == {"harmony_off", *TRAINED_BASELINES} and (paired["n"] == 2).all()
    for baseline, table in ((DIRECT_ARM, "paired_direct"), (AUTOREGRESSIVE_ARM, "paired_autoregressive")):
        against = pd.read_csv(real_grid / f"{table}.csv")
        assert set(against["arm"]) == set(arms) - {baseline} and (against["n"] == 2).all(), table
    assert (real_grid / "figures" / "curve_loss.png").exists()
    assert (real_grid / "figures" / "final_metrics.png").exists()
    for arm in arms:
        assert (real_grid / "samples" / f"{arm}.mid").exists()
    report = (real_grid / "report.md").read_text()
    assert "t = 4.30" in report and "harmony_off" in report and "positional unigram" in report


@pytest.mark.slow
@real_stack
def test_real_grid_killed_three_times_matches_uninterrupted_grid(tmp_path, real_grid):
    """SIGKILL of the whole process group three times, each at a seeded random moment after the
    attempt has made progress (a run's epoch checkpoint, evaluation or DONE), then rerun to the
    end: finished runs are not trained again and every number of the tables equals the
    uninterrupted grid's (README, "Exact resume")."""
    import numpy as np

    out = tmp_path / "out"
    # local-parallel here, local for the clean grid: the launcher must not change a number either
    command = [sys.executable, "ablations/run.py", *REAL_ARGV, "--out", str(out), "--launcher", "local-parallel"]
    runs_dir = out / "harmony" / "runs"
    rng = np.random.default_rng(21)

    def progress() -> dict[Path, int]:
        files = [*runs_dir.glob("*/checkpoints/last.ckpt"), *runs_dir.glob("*/test_metrics.json"),
                 *runs_dir.glob("*/DONE")]
        return {path: path.stat().st_mtime_ns for path in files if path.exists()}

    kills = 0
    for _ in range(3):
        before = progress()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)  # its own process group: the workers die with it
        deadline = time.time() + 600
        while process.poll() is None and progress().items() <= before.items():
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))  # training, evaluation, the next run's start, or the tables
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        time.sleep(0.5)  # the pool's workers, killed with the group, release their files
    assert kills == 3
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in runs_dir.glob("*/DONE")}
    total = len(pd.read_csv(real_grid / "status.csv"))
    assert len(done_before) < total

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{len(done_before)} already done" in result.stdout
    assert result.stdout.count(" done in ") == total - len(done_before)  # only the missing runs trained
    for finished, mtime in done_before.items():  # finished runs were not touched
        assert (runs_dir / finished / "DONE").stat().st_mtime_ns == mtime
    for table in ("final", "summary", "paired"):
        resumed = pd.read_csv(out / "harmony" / f"{table}.csv")
        clean = pd.read_csv(real_grid / f"{table}.csv")
        pd.testing.assert_frame_equal(resumed, clean, check_exact=True)


def test_wandb_is_offline_unless_the_user_chose_or_logged_in(tmp_path, monkeypatch):
    from ablations.runner import configure_wandb_mode

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    configure_wandb_mode(enabled=True)
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    configure_wandb_mode(enabled=True)
    assert os.environ["WANDB_MODE"] == "online"
    monkeypatch.delenv("WANDB_MODE")
    configure_wandb_mode(enabled=False)
    assert "WANDB_MODE" not in os.environ


def test_auto_launcher_runs_cpu_profiles_in_parallel_and_gpu_budgets_one_by_one():
    from ablations.runner import resolve_launcher

    assert resolve_launcher("auto", "quick", devices=1) == "local-parallel"
    assert resolve_launcher("auto", "cpu", devices=1) == "local-parallel"
    assert resolve_launcher("auto", "full", devices=1) == "local"
    assert resolve_launcher("auto", "quick", devices=2) == "local"  # DDP inside the run
    assert resolve_launcher("slurm", "quick", devices=1) == "slurm"  # an explicit choice stands


def test_dose_response_grids_compare_each_weight_with_weight_zero():
    plan = expand_grid("harmony_weight", "cpu", seeds=3)
    assert plan.reference == "harmony_w0"
    weights = {arm: next(r.config.loss for r in plan.runs if r.arm == arm) for arm in plan.arms
               if arm not in TRAINED_BASELINES}
    assert [w.harmony_weights for w in weights.values()] == [(x, x, x) for x in DOSE_WEIGHTS["harmony_weight"][1]]
    assert not any(weights["harmony_w0"].harmony_weights)
    assert all(all(w.harmony_weights) for a, w in weights.items() if a != "harmony_w0")
    scale = expand_grid("scale_weight", "quick", seeds=1)
    assert scale.reference == "scale_w0"
    assert [next(r.config.loss.scale_weight for r in scale.runs if r.arm == a) for a in scale.arms
            if a not in TRAINED_BASELINES] \
        == list(DOSE_WEIGHTS["scale_weight"][1])
    # run on their own
    assert not set(plan.arms) - set(TRAINED_BASELINES) & set(expand_grid("all", "quick", seeds=1).arms)
