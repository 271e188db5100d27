"""Train one RMVAE run from a :class:`~rmvae.config.Config` into a run folder.

The run folder holds ``config.json``, ``metrics.csv`` (every logged row, always on:
:mod:`rmvae.run_log`), ``checkpoints/best.ckpt`` (lowest ``val/nll``: the importance-weighted
next-measure NLL, comparable across ablation arms, unlike the total loss) and
``checkpoints/last.ckpt`` (written between epochs). A folder that already has ``last.ckpt``
resumes from it and ends as if never stopped, however often it was killed
(:mod:`rmvae.checkpoints`, :mod:`rmvae.data.sampling`); a torn or foreign ``last.ckpt`` stops
the run with one line saying what to do. Weights & Biases logs the same numbers (offline unless the user
has logged in). The same code runs on CPU, one GPU, or DDP over ``train.devices`` processes.
"""
from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from rmvae.checkpoints import AtomicCheckpointIO, CheckpointError, LastCheckpoint, check_resumable
from rmvae.config import Config
from rmvae.data.datamodule import ChoraleDataModule
from rmvae.data.sampling import ExactResume
from rmvae.files import atomic_write_text, remove_stray_temporaries
from rmvae.module import RMVAEModule, TrainingDiverged
from rmvae.run_log import RunCSVLogger

__all__ = ["train", "TrainingDiverged", "CheckpointError", "wandb_mode"]

MONITOR = "val/nll"


def wandb_mode() -> str:
    """``online`` only when the user is logged in (or asked via WANDB_MODE); else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def _loggers(config: Config, out_dir: Path) -> list:
    loggers = [RunCSVLogger(str(out_dir))]
    if config.train.wandb:
        run_id_file = out_dir / "wandb_id.txt"  # the same W&B run continues when the run resumes
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
        logger = WandbLogger(project=config.train.wandb_project, group=config.train.wandb_group,
                             name=config.train.wandb_name, tags=list(config.train.wandb_tags),
                             save_dir=str(out_dir), id=run_id, resume="allow" if run_id else None,
                             mode=wandb_mode(), config=config.to_dict())
        loggers.append(logger)
    return loggers


def build_trainer(config: Config, out_dir: Path, loggers: list, progress_bar: bool = True) -> L.Trainer:
    train = config.train
    # best.ckpt keeps its name when a replayed epoch writes it again after a resume.
    best = ModelCheckpoint(dirpath=str(out_dir / "checkpoints"), filename="best", monitor=MONITOR,
                           mode="min", save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    # last.ckpt between epochs, before LearningRateMonitor logs the new epoch's row: a kill at any
    # moment resumes there and replays the lost steps and rows exactly (rmvae.checkpoints).
    last = LastCheckpoint(out_dir / "checkpoints" / "last.ckpt", _run_log(loggers))
    callbacks = [last, ExactResume(), best, LearningRateMonitor(logging_interval="epoch")]
    strategy = "ddp" if train.devices > 1 else "auto"
    return L.Trainer(max_epochs=train.max_epochs if train.max_steps <= 0 else -1, max_steps=train.max_steps,
                     accelerator=train.accelerator, devices=train.devices, strategy=strategy,
                     precision=train.precision, gradient_clip_val=train.grad_clip, logger=loggers,
                     callbacks=callbacks, plugins=[AtomicCheckpointIO()], deterministic=train.deterministic,
                     log_every_n_steps=train.log_every_n_steps, limit_val_batches=train.limit_val_batches,
                     check_val_every_n_epoch=train.val_every_n_epochs,
                     enable_progress_bar=progress_bar, enable_model_summary=False, default_root_dir=str(out_dir))


def _run_log(loggers: list) -> RunCSVLogger:
    return next(logger for logger in loggers if isinstance(logger, RunCSVLogger))


def train(config: Config, out_dir: str | Path, progress_bar: bool = True, cache_dir: str | Path | None = None) -> dict:
    """Train (or resume) the run described by ``config`` in ``out_dir``.

    Returns:
        ``{"best_checkpoint", "last_checkpoint", "wandb_run_id", "steps"}``.

    Raises:
        TrainingDiverged: the loss became NaN/inf; the message names the step and last finite terms.
        CheckpointError: ``last.ckpt`` is torn or belongs to another run (one line: what to do).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "checkpoints" / "last.ckpt"
    metrics_csv = out_dir / "metrics.csv"
    if last.exists():  # before anything is loaded: a run that cannot resume says so at once
        check_resumable(last, config)
    config_json = out_dir / "config.json"
    if not config_json.exists():
        atomic_write_text(config_json, config.to_json())
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    datamodule = ChoraleDataModule(config.data, cache_dir=cache_dir, progress=progress_bar,
                                   shuffle_seed=config.train.seed)
    datamodule.prepare_data()
    datamodule.setup()
    module = RMVAEModule(config.to_dict(), datamodule.encoding_info)
    loggers = _loggers(config, out_dir)
    trainer = build_trainer(config, out_dir, loggers, progress_bar=progress_bar)
    if trainer.is_global_zero:
        remove_stray_temporaries(last.parent)
        if not last.exists():  # a first attempt killed before its first checkpoint left rows behind
            metrics_csv.unlink(missing_ok=True)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None,
                    weights_only=False)
    finally:
        run_id = None
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                run_id = logger.version
                if trainer.is_global_zero and run_id:
                    (out_dir / "wandb_id.txt").write_text(str(run_id))
                import wandb

                wandb.finish()  # close W&B even when training crashed
    best = trainer.checkpoint_callback.best_model_path or str(last)
    return {"best_checkpoint": best, "last_checkpoint": str(last), "wandb_run_id": run_id,
            "steps": int(trainer.global_step), "parameters": module.model.n_parameters(),
            **last_validation(metrics_csv, ("val/nll", "val/active_units", "val/kl_inputs"))}


def last_validation(metrics_csv: Path, keys) -> dict[str, float]:
    """The last logged value of each validation metric (absent keys are left out)."""
    if not metrics_csv.exists():
        return {}
    metrics = pd.read_csv(metrics_csv)
    return {key: float(metrics[key].dropna().iloc[-1]) for key in keys
            if key in metrics and metrics[key].notna().any()}


def collapse_warning(result: dict) -> str | None:
    """A warning when every latent dimension is inactive at the last validation (posterior collapse)."""
    if result.get("val/active_units") == 0:
        return (f"warning: no active latent unit at the last validation (input KL {result.get('val/kl_inputs', 0):.3g} "
                f"nats): the encoders are switched off (posterior collapse); with model.temporal_input=latents the "
                f"prediction then ignores the past. See docs/design.md §2.8 (model.latent_prior=temporal, "
                f"model.temporal_input=experts, loss.free_bits).")
    return None


def torch_threads(n: int | None) -> None:
    """Limit intra-op threads (parallel runs on a small machine must not oversubscribe cores)."""
    if n:
        torch.set_num_threads(n)
