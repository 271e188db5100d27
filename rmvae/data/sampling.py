"""Training order and training noise that a resumed run reproduces exactly.

A run killed and resumed must end with the numbers of a run never interrupted (README,
"Exact resume"). Two things make that hold without saving any random generator's state:

- **Order**: epoch ``e`` visits the windows in ``randperm(n)`` drawn from a generator seeded
  by ``(seed, e)`` alone (:class:`EpochShuffle`), not from the global generator at the moment
  the epoch's iterator happens to be created.
- **Noise**: every training step reseeds torch's generator from ``(seed, step, rank)``
  (:func:`step_seed`), so dropout, the sampled latents, the random ELBO subsets and the sampled
  input measures of step ``t`` depend on ``t`` only, not on what ran before it in this process
  (validation, a resume, another run in the same worker).

``last.ckpt`` is written between epochs (:class:`rmvae.checkpoints.LastCheckpoint`), so a kill
at any moment resumes at the start of an epoch and replays the lost steps identically.
:class:`ExactResume` sets Lightning's loop counters on such a resume to those of a run that
never stopped, and keeps the sampler on the epoch the run is in.
"""
from __future__ import annotations

from typing import Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Sampler

# The key of a checkpoint written between epochs for an exact resume (rmvae.checkpoints.LastCheckpoint).
RESUME_KEY = "exact_resume"


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of training step ``step`` on process ``rank``: independent streams per step."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochShuffle(Sampler[int]):
    """A random order of ``n`` items per epoch, a function of ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` at the start of every epoch (as for a
    ``DistributedSampler``); under DDP Lightning wraps this sampler in its distributed wrapper,
    which shuffles by ``(seed, epoch)`` too.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch))

    def __len__(self) -> int:
        return self.n


class ExactResume(Callback):
    """Keeps a resumed run on the uninterrupted run's epoch order, steps and logging steps.

    Lightning (2.6) reads a checkpoint's loop progress as a restart inside the epoch that was
    running when it was written. Resumed from the end of an epoch, it replays that epoch's end
    and counts the epoch once more (in ``current_epoch`` and in the epoch it passes to
    ``set_epoch``); and however the checkpoint's batch counters read, a restarting epoch loop
    adds one to the step the loggers write (``_batches_that_stepped``), in ``reset`` or by a
    skipped validation. Each resume shifts the run once more. A ``last.ckpt`` marked with
    :data:`RESUME_KEY` was written between epochs, so here its counters are set, before
    Lightning restores them, to those after an epoch has fully ended (:func:`between_epochs`),
    and its epoch loop starts the next epoch as a fresh one, not as a restart.
    """

    def __init__(self):
        self._between_epochs = False

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._between_epochs = RESUME_KEY in checkpoint and "loops" in checkpoint
        if self._between_epochs:
            between_epochs(checkpoint["loops"]["fit_loop"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._between_epochs:  # the next epoch runs from its first batch, as in a run never stopped
            epoch_loop = trainer.fit_loop.epoch_loop
            epoch_loop.restarting = False  # its validation loop too
            epoch_loop.reset_restart_stage()
            epoch_loop.val_loop.reset_restart_stage()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_epoch = getattr(getattr(trainer.train_dataloader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):  # EpochShuffle, or Lightning's distributed wrapper of it under DDP
            set_epoch(trainer.current_epoch)


def between_epochs(fit_loop: dict) -> None:
    """Set a fit loop's saved progress (``checkpoint["loops"]["fit_loop"]``) to that of the moment
    after its last completed epoch: the epochs and every training and optimizer counter settle
    on their completed counts, the per-epoch counts and validation's on zero."""
    for key, progress in fit_loop.items():
        if not isinstance(progress, dict) or key.endswith("state_dict"):
            continue
        if key == "epoch_progress":
            _settle(progress, per_epoch=False)
        elif ".val_loop." in key:
            _settle(progress, per_epoch=True, total_to_zero=True)
        else:
            _settle(progress, per_epoch=True)


def _settle(progress: dict, per_epoch: bool, total_to_zero: bool = False) -> None:
    """In every ``{"total", "current"}`` pair under ``progress``, each count becomes the pair's
    completed count (``current`` becomes zero when ``per_epoch``; ``total`` too with ``total_to_zero``)."""
    if "total" in progress and "current" in progress:
        for part in ("total", "current"):
            zero = part == "current" and per_epoch or part == "total" and total_to_zero
            done = 0 if zero else progress[part]["completed"]
            progress[part] = {name: done for name in progress[part]}
        if "is_last_batch" in progress:
            progress["is_last_batch"] = False
        return
    for value in progress.values():
        if isinstance(value, dict):
            _settle(value, per_epoch, total_to_zero)
