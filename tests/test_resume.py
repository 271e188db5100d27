"""Exact resume: a run SIGKILLed (a real process) several times at random moments and resumed each
time ends with the numbers of the same run never interrupted — every metrics.csv row, every
test metric and every final weight; a torn or foreign last.ckpt stops the run with one line."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rmvae.checkpoints import CheckpointError
from rmvae.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig, apply_overrides
from rmvae.data.sampling import EpochShuffle, step_seed
from rmvae.train import train

# The process killed here is benchmarks/resume_spread.py's worker: it trains and evaluates the
# run of a config file in a folder (as a grid does) and, with --kill-at MOMENT, SIGKILLs itself
# at that moment (benchmarks/kill_points.py: "train 5", "val 8 1", "write last.ckpt 7", ...);
# with --trace FILE it writes every moment it reaches.
WORKER = Path(__file__).resolve().parents[1] / "benchmarks" / "resume_spread.py"


def resume_config(folder, **train_fields) -> Config:
    train = dict(max_steps=12, wandb=False, log_every_n_steps=1, val_every_n_epochs=1)
    train.update(train_fields)
    return Config(data=DataConfig(source=str(folder), split=(0.6, 0.2, 0.2), batch_size=16, n_measures=4),
                  model=ModelConfig(size="small", width_scale=0.25, z_dim=8),
                  loss=LossConfig(n_subsets=1, recon_inputs_measures=2), train=TrainConfig(**train))


def _worker(config_file, run_dir, cache_dir, kill_at: str | None = None, trace=None) -> int:
    args = [sys.executable, str(WORKER), "--worker", str(config_file), str(run_dir), "--cache-dir", str(cache_dir)]
    args += ["--kill-at", kill_at] if kill_at is not None else []
    args += ["--trace", str(trace)] if trace is not None else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600).returncode


def _kill_moments(trace: list[str], seed: int) -> list[str]:
    """Three moments drawn with ``seed``, in run order: one in the first epoch (before its first
    checkpoint), one inside a later validation, one anywhere after it (training, a checkpoint or
    metrics.csv write, the test evaluation)."""
    rng = np.random.default_rng(seed)
    moments = list(dict.fromkeys(m for m in trace if not m.startswith("sanity")))
    first_checkpoint = moments.index(next(m for m in moments if m.startswith("write last.ckpt")))
    first = int(rng.integers(first_checkpoint))
    validations = [i for i, m in enumerate(moments) if m.startswith("val ") and i > first_checkpoint]
    second = int(rng.choice(validations[:-1]))  # not the last: the third moment comes after it
    third = int(rng.integers(second + 1, len(moments)))
    return [moments[first], moments[second], moments[third]]


def _same_numbers(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def _final_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["state_dict"]


@pytest.mark.slow
def test_run_killed_three_times_ends_with_the_uninterrupted_numbers(chorale_folder, cache_dir, tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(resume_config(chorale_folder).to_json())
    straight, killed, trace = tmp_path / "straight", tmp_path / "killed", tmp_path / "trace"
    assert _worker(config_file, straight, cache_dir, trace=trace) == 0
    moments = _kill_moments(trace.read_text().splitlines(), seed=21)
    for moment in moments:
        assert _worker(config_file, killed, cache_dir, kill_at=moment) == -9, moment  # SIGKILL there
    assert _worker(config_file, killed, cache_dir) == 0  # resumes from last.ckpt and finishes
    assert (killed / "DONE").exists()
    pd.testing.assert_frame_equal(pd.read_csv(killed / "metrics.csv"), pd.read_csv(straight / "metrics.csv"),
                                  check_exact=True)
    tests = [json.loads((run / "test_metrics.json").read_text()) for run in (straight, killed)]
    assert _same_numbers(*tests)
    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((killed / "checkpoints").glob(".*.tmp"))  # no stray temporary file is left


@pytest.fixture(scope="module")
def short_run(chorale_folder, cache_dir, tmp_path_factory):
    """A finished 5-step run (its last.ckpt was written between epochs)."""
    out = tmp_path_factory.mktemp("short")
    config = resume_config(chorale_folder, max_steps=5)
    train(config, out, progress_bar=False, cache_dir=cache_dir)
    return config, out


def _one_line_error(config, out, cache_dir) -> str:
    with pytest.raises(CheckpointError) as error:
        train(config, out, progress_bar=False, cache_dir=cache_dir)
    message = str(error.value)
    assert "\n" not in message and str(out / "checkpoints" / "last.ckpt") in message
    return message


def test_torn_or_foreign_checkpoint_stops_the_resume_with_one_line(short_run, cache_dir, tmp_path):
    config, out = short_run
    assert train(config, out, progress_bar=False, cache_dir=cache_dir)["steps"] == 5  # a whole one resumes
    other = apply_overrides(config, {"train.seed": 1, "model.z_dim": 4, "train.max_steps": 9})
    message = _one_line_error(other, out, cache_dir)
    assert "other settings (model.z_dim, train.seed)" in message and "delete" in message

    torn = tmp_path / "torn"
    (torn / "checkpoints").mkdir(parents=True)
    whole = (out / "checkpoints" / "last.ckpt").read_bytes()
    (torn / "checkpoints" / "last.ckpt").write_bytes(whole[:len(whole) // 2])  # truncated by hand
    message = _one_line_error(config, torn, cache_dir)
    assert "truncated" in message and f"delete {torn / 'checkpoints'}" in message

    foreign = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    del foreign["exact_resume"]  # as written by an earlier version, at the end of an epoch
    torch.save(foreign, torn / "checkpoints" / "last.ckpt")
    assert "not written between epochs" in _one_line_error(config, torn, cache_dir)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    sampler = EpochShuffle(50, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(50)) and first != second
    torch.manual_seed(123)  # the global generator plays no part
    again = EpochShuffle(50, seed=3)
    assert list(again) == first and again.order(1) == second and EpochShuffle(50, seed=4).order(0) != first


def test_step_seed_depends_on_seed_step_and_rank_only():
    seeds = {step_seed(seed, step, rank) for seed in (0, 1) for step in range(50) for rank in (0, 1)}
    assert len(seeds) == 200 and all(0 <= s < 2 ** 63 for s in seeds)  # distinct streams, valid torch seeds
    assert step_seed(3, 17, 1) == step_seed(3, 17, 1)
