"""Exact resume: a run killed (SIGKILL, a real process) mid-epoch and resumed ends with the
numbers of the same run never interrupted — every logged metric and every final weight."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from rmvae.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig
from rmvae.data.sampling import EpochShuffle, step_seed

# The process killed here is benchmarks/resume_spread.py's worker: it trains the run of a
# config file into a folder and, with --kill-at, SIGKILLs itself when that training step starts
# (after the checkpoint of the epoch before it).
WORKER = Path(__file__).resolve().parents[1] / "benchmarks" / "resume_spread.py"


def resume_config(folder, **train_fields) -> Config:
    train = dict(max_steps=16, wandb=False, log_every_n_steps=1, val_every_n_epochs=1)
    train.update(train_fields)
    return Config(data=DataConfig(source=str(folder), split=(0.6, 0.2, 0.2), batch_size=16, n_measures=4),
                  model=ModelConfig(size="small", width_scale=0.25, z_dim=8),
                  loss=LossConfig(n_subsets=1, recon_inputs_measures=2), train=TrainConfig(**train))


def _train_process(config: Config, run_dir, tmp_path, cache_dir, kill_at: int | None = None) -> int:
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    args = [sys.executable, str(WORKER), "--worker", str(config_file), str(run_dir), "--cache-dir", str(cache_dir)]
    args += ["--kill-at", str(kill_at)] if kill_at is not None else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600).returncode


def _final_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["state_dict"]


@pytest.mark.slow
def test_killed_mid_epoch_run_ends_with_the_uninterrupted_numbers(chorale_folder, cache_dir, tmp_path):
    config = resume_config(chorale_folder)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _train_process(config, straight, tmp_path, cache_dir) == 0
    metrics = pd.read_csv(straight / "metrics.csv")
    steps_per_epoch = int(metrics.groupby("epoch")["step"].max().iloc[0]) + 1
    kill_at = steps_per_epoch + steps_per_epoch // 2  # the middle of the second epoch
    assert config.train.max_steps > kill_at + steps_per_epoch  # a whole epoch after the resume too
    assert _train_process(config, killed, tmp_path, cache_dir, kill_at=kill_at) == -9  # SIGKILL
    assert (killed / "checkpoints" / "last.ckpt").exists()
    assert _train_process(config, killed, tmp_path, cache_dir) == 0  # resumes from last.ckpt
    pd.testing.assert_frame_equal(pd.read_csv(killed / "metrics.csv"), metrics)
    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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
