"""How far does a killed and resumed run land from the same run never interrupted?

    python benchmarks/resume_spread.py [--accelerator cpu|gpu] [--steps 60] [--deterministic]

Trains one `quick`-profile run straight, then the same run in a process that SIGKILLs itself
when training step ``--kill-at`` starts (the middle of an epoch), reruns it to the end (it
resumes from ``last.ckpt``), and prints the largest difference of every logged metric and of
the final weights. On CPU every difference is 0 (README, "Exact resume"); on a GPU the
difference is the spread of its non-deterministic kernels, which ``--deterministic``
(``train.deterministic``) should remove at some cost in speed. Results go to
``benchmarks/results/resume_spread_<accelerator>.txt``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from common import publish  # benchmarks/ is the script's folder

REPO = Path(__file__).resolve().parent.parent


def worker(config_file: str, run_dir: str, kill_at: int | None, cache_dir: Path) -> None:
    """Train the run; with ``kill_at``, die by SIGKILL when that training step starts (also the
    process ``tests/test_resume.py`` kills)."""
    from rmvae.config import Config
    from rmvae.module import RMVAEModule
    from rmvae.train import train

    if kill_at is not None:
        start = RMVAEModule.on_train_batch_start

        def start_or_die(self, batch, batch_idx):
            if self.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            start(self, batch, batch_idx)
        RMVAEModule.on_train_batch_start = start_or_die
    train(Config.from_dict(json.loads(Path(config_file).read_text())), run_dir, progress_bar=False,
          cache_dir=cache_dir)


def _run(config_file: Path, run_dir: Path, kill_at: int | None = None) -> int:
    command = [sys.executable, __file__, "--worker", str(config_file), str(run_dir)]
    command += ["--kill-at", str(kill_at)] if kill_at is not None else []
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--kill-at", type=int, default=None, help="default: the middle of the third epoch")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache", help="corpus cache")
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.kill_at, args.cache_dir)
        return 0

    import pandas as pd
    import torch

    from rmvae.config import Config, apply_overrides
    from rmvae.profiles import profile_overrides

    overrides = {**profile_overrides("quick"), "train.max_steps": args.steps, "train.val_every_n_epochs": 1,
                 "train.wandb": False, "train.accelerator": args.accelerator,
                 "train.deterministic": args.deterministic}
    config = apply_overrides(Config(), overrides)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config_file = scratch / "config.json"
        config_file.write_text(config.to_json())
        if _run(config_file, scratch / "straight") != 0:
            raise SystemExit("the uninterrupted run failed")
        straight = pd.read_csv(scratch / "straight" / "metrics.csv")
        per_epoch = int(straight.groupby("epoch")["step"].max().iloc[0]) + 1
        kill_at = args.kill_at if args.kill_at is not None else 2 * per_epoch + per_epoch // 2
        if _run(config_file, scratch / "killed", kill_at) != -signal.SIGKILL:
            raise SystemExit(f"the run was not killed at step {kill_at} (max_steps {args.steps})")
        if _run(config_file, scratch / "killed") != 0:
            raise SystemExit("the resumed run failed")
        resumed = pd.read_csv(scratch / "killed" / "metrics.csv")
        weights = [torch.load(scratch / name / "checkpoints" / "last.ckpt", map_location="cpu",
                              weights_only=False)["state_dict"] for name in ("straight", "killed")]
    if straight.shape != resumed.shape or list(straight.columns) != list(resumed.columns):
        raise SystemExit(f"metrics.csv differ in shape: {straight.shape} vs {resumed.shape}")
    numeric = straight.select_dtypes("number").columns
    gaps = (straight[numeric] - resumed[numeric]).abs().max().fillna(0.0)
    weight_gap = max(float((weights[0][k].float() - weights[1][k].float()).abs().max()) for k in weights[0])
    worst = gaps.sort_values(ascending=False).head(5)
    lines = [f"resume spread, {args.accelerator}{' (deterministic)' if args.deterministic else ''}: quick profile, "
             f"{args.steps} steps ({per_epoch} a epoch), killed (SIGKILL) when step {kill_at} started, resumed",
             f"metrics.csv: {len(straight)} rows × {len(numeric)} numeric columns; largest |difference| "
             f"{float(gaps.max()):.3g}; columns that differ: {int((gaps > 0).sum())}",
             *(f"  {name}: {value:.3g}" for name, value in worst.items() if value > 0),
             f"final weights: largest |difference| {weight_gap:.3g}",
             "(model numbers beside the baselines: see benchmarks/results/learning_cpu.txt; this measures "
             "reproducibility, not quality)"]
    publish(lines, REPO / "benchmarks" / "results" / f"resume_spread_{args.accelerator}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
