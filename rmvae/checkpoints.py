"""Checkpoints a kill cannot tear, and a ``last.ckpt`` that a resume can trust.

- :class:`AtomicCheckpointIO` (Lightning's checkpoint IO plugin): every checkpoint,
  ``best.ckpt`` too, is written to a temporary file beside it and renamed over it, so a kill
  during the write leaves the previous checkpoint intact.
- :class:`LastCheckpoint` writes ``last.ckpt`` only between epochs (at the start of every epoch
  after the first, and when training ends) with the rows of ``metrics.csv`` logged so far:
  nothing of the next epoch has run or been logged yet, so a resume replays from there and
  writes every row exactly once (:mod:`rmvae.run_log`; the loop counters are set by
  :class:`rmvae.data.sampling.ExactResume`).
- :func:`check_resumable` refuses, in one line saying what to do, a ``last.ckpt`` that is torn,
  was not written between epochs by :class:`LastCheckpoint`, or belongs to a run with other
  settings, instead of training on from a state the run was never in.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from rmvae.config import Config, ConfigError
from rmvae.data.sampling import RESUME_KEY
from rmvae.errors import UserError
from rmvae.files import atomic_writer
from rmvae.run_log import RunCSVLogger

# Config keys a resume may change: the budget (to train a finished run further) and labels.
MAY_CHANGE = {"train.max_steps", "train.max_epochs", "data.num_workers", "train.wandb", "train.wandb_project",
              "train.wandb_group", "train.wandb_name", "train.wandb_tags"}


class CheckpointError(UserError):
    """A checkpoint a run cannot resume from; the message names the file and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file in the checkpoint's folder, then one rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_writer(Path(path), binary=True) as handle:
            torch.save(checkpoint, handle)


class LastCheckpoint(Callback):
    """Writes ``path`` between epochs, with the run's metric rows, for an exact resume.

    It must run before the callbacks that log at an epoch's start (LearningRateMonitor), so
    that their rows belong to the epoch the resume replays.
    """

    def __init__(self, path: Path, log: RunCSVLogger):
        self.path, self.run_log = Path(path), log
        self._saved_step = 0  # a fresh run has nothing to save before its first step
        self._saving: str | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, "epoch start")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, "train end")

    def _save(self, trainer: L.Trainer, moment: str) -> None:
        if trainer.global_step == self._saved_step:
            return  # nothing new since the checkpoint this process resumed from (or wrote)
        self.run_log.save()  # metrics.csv on disk holds at least the checkpoint's rows
        self._saving = moment
        try:
            trainer.save_checkpoint(self.path)
        finally:
            self._saving = None
        self._saved_step = trainer.global_step

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._saving:  # only last.ckpt carries the rows (best.ckpt is for evaluation)
            checkpoint[RESUME_KEY] = {"at": self._saving, "rows": self.run_log.rows()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if RESUME_KEY in checkpoint:  # train() resumes from nothing else (check_resumable)
            self.run_log.restore(checkpoint[RESUME_KEY]["rows"])
            self._saved_step = int(checkpoint["global_step"])


def check_resumable(path: Path, config: Config) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a whole ``last.ckpt`` of this run.

    The file is memory-mapped, so checking a large checkpoint reads little of it.
    """
    path = Path(path)
    restart = f"delete {path.parent} and {path.parent.parent / 'metrics.csv'} to restart the run from its first step"
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive, its directory last
        raise CheckpointError(f"{path} is truncated or not a checkpoint (its zip directory is missing): a write was "
                              f"cut short; {restart}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # a truncated zip, a stray write: nothing in it can be trusted
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} cannot be read ({reason}): it is torn or not a checkpoint; {restart}") from None
    if not isinstance(checkpoint, dict) or RESUME_KEY not in checkpoint:
        raise CheckpointError(f"{path} was not written between epochs by this version of rmvae, so the run cannot "
                              f"resume exactly from it; {restart}")
    differ = _differing_keys(checkpoint.get("hyper_parameters", {}).get("config", {}), config)
    if differ:
        raise CheckpointError(f"{path} belongs to a run with other settings ({', '.join(differ)}); resume it with "
                              f"the settings it was trained with, or {restart}")


def _differing_keys(stored: dict, config: Config) -> list[str]:
    """Dotted config keys whose stored value differs from ``config``'s (:data:`MAY_CHANGE` aside)."""
    try:
        stored = Config.from_stored(stored).to_dict()
    except (ConfigError, TypeError, ValueError) as error:
        return [f"unreadable config: {error}"]
    current = config.to_dict()
    keys = {f"{section}.{name}" for part in (stored, current) for section, values in part.items() for name in values}
    return sorted(key for key in keys - MAY_CHANGE
                  if _value(stored, key) != _value(current, key))


def _value(config: dict, key: str) -> Any:
    section, name = key.split(".")
    return config.get(section, {}).get(name)
