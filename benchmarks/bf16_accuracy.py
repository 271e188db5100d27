"""Accuracy check of bf16-mixed training against fp32 (``benchmarks/train_throughput.py --accuracy``).

Trains the small model for ``steps`` steps with ``rmvae.train.train`` on ``data.max_pieces``
pieces (W&B off), once with ``train.precision=32-true`` and once with ``bf16-mixed`` (nothing
else differs), per seed, and reports the validation token accuracy and reconstruction NLL of the
last checkpoint on the whole validation set; a second seed gives the seed-to-seed noise.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from machine import load_average  # benchmarks/ is the script's folder


def accuracy_check(steps: int, seeds: list[int], threads: int, max_pieces: int, limit_val: float) -> list[dict]:
    """One row per (precision, seed): validation accuracy, NLL, the baselines' accuracy, steps and time."""
    import torch

    from rmvae.config import Config, apply_overrides
    from rmvae.profiles import THESIS_DESIGN
    from rmvae.data.datamodule import ChoraleDataModule
    from rmvae.module import load_module
    from rmvae.train import train

    print(f"\naccuracy check: small model, {steps} steps, data.max_pieces={max_pieces}, 32-true vs bf16-mixed, "
          f"seeds {seeds}", flush=True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rmvae-bf16-") as root:
        for seed in seeds:
            for precision in ("32-true", "bf16-mixed"):
                config = apply_overrides(Config(), {
                    **THESIS_DESIGN, "model.size": "small", "data.max_pieces": max_pieces, "train.max_steps": steps,
                    "train.wandb": False, "train.seed": seed, "train.limit_val_batches": limit_val,
                    "train.precision": precision})
                load = load_average()
                started = time.perf_counter()
                result = train(config, Path(root) / f"{precision}-{seed}", progress_bar=False)
                seconds = time.perf_counter() - started
                module = load_module(result["last_checkpoint"])
                module.eval()
                datamodule = ChoraleDataModule(config.data)
                datamodule.setup()
                sums = dict.fromkeys(("acc", "recon_nll", "hold", "repeat", "count"), 0.0)
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                    for batch in datamodule.val_dataloader():
                        _, logs, output = module.model_step(batch, "val")
                        n = batch["inputs"].shape[0]
                        baselines = module.baseline_logs(batch)
                        sums["acc"] += float(module.accuracy_logs(output, batch)["acc"]) * n
                        sums["recon_nll"] += float(logs["recon_nll"]) * n
                        sums["hold"] += float(baselines["baseline_hold_acc"]) * n
                        sums["repeat"] += float(baselines["baseline_repeat_acc"]) * n
                        sums["count"] += n
                count = sums["count"]
                rows.append({"precision": precision, "seed": seed, "steps": result["steps"], "train_s": seconds,
                             "val_acc": sums["acc"] / count, "val_recon_nll": sums["recon_nll"] / count,
                             "val_windows": int(count), "baseline_hold_acc": sums["hold"] / count,
                             "baseline_repeat_acc": sums["repeat"] / count, "load": f"{load} → {load_average()}"})
                print(f"  {precision:10s} seed {seed}: val acc {rows[-1]['val_acc']:.4f}, recon NLL "
                      f"{rows[-1]['val_recon_nll']:.2f}, {result['steps']} steps in {seconds:.0f} s "
                      f"(load {rows[-1]['load']})", flush=True)
    return rows


def accuracy_table(rows: list[dict], seeds: list[int]) -> str:
    """fp32 against bf16 per seed, the baselines and the seed-to-seed spread."""
    by = {(row["precision"], row["seed"]): row for row in rows}
    lines = [f"\n{'seed':>4s} {'fp32 acc':>9s} {'bf16 acc':>9s} {'Δ':>8s} {'fp32 NLL':>9s} {'bf16 NLL':>9s}"]
    for seed in seeds:
        a, b = by[("32-true", seed)], by[("bf16-mixed", seed)]
        lines.append(f"{seed:4d} {a['val_acc']:9.4f} {b['val_acc']:9.4f} {b['val_acc'] - a['val_acc']:+8.4f} "
                     f"{a['val_recon_nll']:9.2f} {b['val_recon_nll']:9.2f}")
    if len(seeds) > 1:
        fp32 = [by[("32-true", s)]["val_acc"] for s in seeds]
        bf16 = [by[("bf16-mixed", s)]["val_acc"] for s in seeds]
        lines.append(f"baselines on the same windows: always hold {rows[0]['baseline_hold_acc']:.4f}, "
                     f"repeat the last measure {rows[0]['baseline_repeat_acc']:.4f}")
        lines.append(f"seed-to-seed spread: fp32 {max(fp32) - min(fp32):.4f}, bf16 {max(bf16) - min(bf16):.4f}; "
                     f"mean fp32 {statistics.fmean(fp32):.4f}, bf16 {statistics.fmean(bf16):.4f}")
    return "\n".join(lines)
