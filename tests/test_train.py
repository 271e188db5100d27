"""Training end to end on real chorales: checkpoints, reproducibility, resume, NaN stop, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from rmvae.config import Config, ConfigError, DataConfig, LossConfig, ModelConfig, TrainConfig, apply_overrides
from rmvae.data.datamodule import ChoraleDataModule
from rmvae.module import RMVAEModule, TrainingDiverged, load_module
from rmvae.train import train


def tiny_config(folder, **train_fields) -> Config:
    train_defaults = dict(max_steps=6, wandb=False, log_every_n_steps=1, limit_val_batches=1.0)
    train_defaults.update(train_fields)
    return Config(data=DataConfig(source=str(folder), split=(0.6, 0.2, 0.2), batch_size=16, n_measures=4),
                  model=ModelConfig(size="small", width_scale=0.25, z_dim=8),
                  loss=LossConfig(n_subsets=1), train=TrainConfig(**train_defaults))


def test_run_writes_checkpoints_metrics_and_config(chorale_folder, cache_dir, tmp_path):
    config = tiny_config(chorale_folder)
    result = train(config, tmp_path, progress_bar=False, cache_dir=cache_dir)
    assert result["steps"] == 6
    assert (tmp_path / "checkpoints" / "best.ckpt").exists() and (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert Config.from_dict(json.loads((tmp_path / "config.json").read_text())) == config
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    for column in ("train/loss_step", "train/beta_step", "val/recon_nll", "val/kl", "val/acc", "val/acc_onsets",
                   "val/acc_pitches", "val/acc_fill", "val/acc_voice0", "val/harmony", "val/scale", "val/rhythm",
                   "val/harmony_semitone", "val/baseline_hold_acc", "val/baseline_repeat_acc"):
        assert column in metrics.columns, column
    # β starts at 0 (before 1% of training) and rises: at step 5 of 6 it is 1.
    beta = metrics["train/beta_step"].dropna().tolist()
    assert beta[0] == 0.0 and beta[-1] == 1.0
    # The always-hold baseline is the share of holds in the targets: between 0 and 1, typically ~0.7.
    assert 0.5 < metrics["val/baseline_hold_acc"].dropna().iloc[-1] < 0.9


def test_checkpoint_alone_rebuilds_the_model_weights_only(chorale_folder, cache_dir, tmp_path):
    config = tiny_config(chorale_folder)
    result = train(config, tmp_path, progress_bar=False, cache_dir=cache_dir)
    raw = torch.load(result["best_checkpoint"], weights_only=True)  # plain types only
    assert raw["hyper_parameters"]["config"]["model"]["z_dim"] == 8
    module = load_module(result["best_checkpoint"]).eval()
    datamodule = ChoraleDataModule(config.data, cache_dir=cache_dir)
    datamodule.setup()
    assert module.hparams.encoding_info == datamodule.encoding_info
    batch = next(iter(datamodule.val_dataloader()))
    again = load_module(result["best_checkpoint"]).eval()
    with torch.no_grad():  # the target is given: a measure writer (the default) scores it teacher-forced
        first = module.model(batch["inputs"], batch["input_mask"], batch["target"], sample=False).prediction
        second = again.model(batch["inputs"], batch["input_mask"], batch["target"], sample=False).prediction
    assert torch.equal(first.pitch_logits, second.pitch_logits) and torch.equal(first.hold_logits, second.hold_logits)
    state = torch.load(result["best_checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())


def test_same_seed_gives_identical_metrics(chorale_folder, cache_dir, tmp_path):
    config = tiny_config(chorale_folder, max_steps=4)
    train(config, tmp_path / "a", progress_bar=False, cache_dir=cache_dir)
    train(config, tmp_path / "b", progress_bar=False, cache_dir=cache_dir)
    a, b = pd.read_csv(tmp_path / "a" / "metrics.csv"), pd.read_csv(tmp_path / "b" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    other = train(apply_overrides(config, {"train.seed": 1}), tmp_path / "c", progress_bar=False, cache_dir=cache_dir)
    c = pd.read_csv(tmp_path / "c" / "metrics.csv")
    assert other["steps"] == 4 and not a["train/loss_step"].dropna().equals(c["train/loss_step"].dropna())


def test_interrupted_run_resumes_from_last_checkpoint(chorale_folder, cache_dir, tmp_path):
    short = tiny_config(chorale_folder, max_steps=3)
    train(short, tmp_path, progress_bar=False, cache_dir=cache_dir)
    longer = apply_overrides(short, {"train.max_steps": 6})
    result = train(longer, tmp_path, progress_bar=False, cache_dir=cache_dir)
    assert result["steps"] == 6
    steps = pd.read_csv(tmp_path / "metrics.csv")["step"]
    assert steps.max() >= 5 and steps.min() == 0  # both segments are in the same metrics.csv


def test_nan_loss_stops_with_a_clear_message(chorale_folder, cache_dir, tmp_path, monkeypatch):
    from rmvae import losses

    original = losses.kl_divergence
    state = {"step": 0}

    def poisoned(*args, **kwargs):  # NaN KL from training step 2 on (validation runs without grad)
        value = original(*args, **kwargs)
        return value * float("nan") if torch.is_grad_enabled() and state["step"] >= 2 else value

    real_step = RMVAEModule.training_step

    def counting_step(self, batch, batch_idx):
        state["step"] = self.global_step
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(losses, "kl_divergence", poisoned)
    monkeypatch.setattr(RMVAEModule, "training_step", counting_step)
    with pytest.raises(TrainingDiverged, match=r"at step 2 .*last finite terms: .*recon="):
        train(tiny_config(chorale_folder, max_steps=20), tmp_path, progress_bar=False, cache_dir=cache_dir)
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_train_cli_flags_and_dotted_overrides(tmp_path):
    from rmvae.commands.train import add_arguments, config_from_args
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args, extra = parser.parse_known_args(["--out", str(tmp_path), "--size", "big", "--no-rpoe", "--no-scale-rhythm",
                                           "--harmony", "--offset", "2", "--model.z_dim=64", "--loss.n_subsets", "3"])
    config = config_from_args(args, extra)
    assert (config.model.size, config.model.rpoe, config.model.z_dim) == ("big", False, 64)
    loss, default = config.loss, LossConfig()
    assert (loss.scale_weight, loss.rhythm_weight, loss.n_subsets) == (0.0, 0.0, 3)
    assert loss.harmony_weights == default.harmony_weights
    args, extra = parser.parse_known_args(["--out", str(tmp_path), "--thesis-design", "--no-harmony", "--scale-rhythm"])
    off = config_from_args(args, extra).loss
    assert off.harmony_weights == (0.0, 0.0, 0.0)
    assert (off.scale_weight, off.rhythm_weight) == (default.scale_weight, default.rhythm_weight)
    assert config.data.offset == 2
    args, extra = parser.parse_known_args(["--out", str(tmp_path), "--profile", "cpu", "--thesis-design", "--lr", "0.01"])
    thesis = config_from_args(args, extra)
    assert (thesis.model.encoder, thesis.model.measure_decoder, thesis.loss.free_bits) == ("rnn", "factorised", 0.0)
    assert thesis.loss.harmony_weights == (0.01, 0.01, 0.01) and thesis.train.lr == 0.01  # flags still win
    from rmvae.profiles import PROFILES

    assert thesis.train.max_steps == PROFILES["cpu"]["train.max_steps"]  # the profile stays
    # the band's offset writes each measure after the one before it (a window writer cannot)
    assert config.model.writer_context == "measure"
    args, extra = parser.parse_known_args(["--out", str(tmp_path), "--offset", "2", "--model.writer_context=window"])
    with pytest.raises(ConfigError, match="writer_context=measure"):
        config_from_args(args, extra)


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(chorale_folder, cache_dir, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, RMVAE_CACHE=str(cache_dir), WANDB_MODE="disabled")
    command = [sys.executable, "-m", "rmvae.cli", "train", "--out", str(out), "--source", str(chorale_folder),
               "--size", "small", "--model.width_scale=0.25", "--model.z_dim=8", "--n-measures", "4",
               "--batch-size", "8", "--max-epochs", "1", "--devices", "2", "--accelerator", "cpu", "--no-wandb",
               "--no-progress", "--data.split=0.6,0.2,0.2", "--train.deterministic=false"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr or "gloo" in result.stderr
    assert "world_size: 2" in result.stderr or "MEMBER: 2/2" in result.stderr
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]
    # One epoch of the training windows split over 2 processes: a few steps, then validation.
    steps = json.loads(result.stdout.strip().splitlines()[-1])["steps"]
    assert 1 <= steps <= 20
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == steps


def test_onset_accuracy_is_the_share_of_all_the_epochs_onsets(chorale_folder, cache_dir):
    """Batches hold different numbers of onsets; the epoch's onset accuracy must pool them (hits
    over onsets of the whole split), not average the per-batch shares."""
    import lightning as L
    import numpy as np
    from torch.utils.data import DataLoader

    from rmvae.metrics import token_accuracy

    config = apply_overrides(tiny_config(chorale_folder), {"model.kind": "direct"})
    datamodule = ChoraleDataModule(config.data, cache_dir=cache_dir)
    datamodule.setup()
    torch.manual_seed(0)
    module = RMVAEModule(config.to_dict(), datamodule.encoding_info).eval()
    loader = DataLoader(datamodule.datasets["val"], batch_size=7)  # uneven batches
    predictions, truths, batch_shares, batch_sizes = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            # what the module scores: the greedy decoding of its prediction (a writer's teacher-forced on the target)
            output = module.model(batch["inputs"], batch["input_mask"].bool(), batch["target"], sample=False,
                                  reconstruct=False)
            predicted = module.model.decode_tokens(output.prediction)
            predictions.append(predicted.numpy())
            truths.append(batch["target"].numpy())
            batch_shares.append(token_accuracy(predicted, batch["target"], datamodule.pitch_range)["onsets"])
            batch_sizes.append(len(predicted))
    pooled = token_accuracy(np.concatenate(predictions), np.concatenate(truths), datamodule.pitch_range)["onsets"]
    per_window = float(np.average(batch_shares, weights=batch_sizes))
    assert abs(pooled - per_window) > 1e-4  # the two averages really differ on these batches
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(module, dataloaders=loader, verbose=False)[0]
    assert logged["val/acc_onsets"] == pytest.approx(pooled, abs=1e-6)
