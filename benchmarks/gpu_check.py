"""GPU check: the same LightningModule on one CUDA device — throughput, memory, and a real short run.

    python benchmarks/gpu_check.py [--sizes small medium big] [--batch 64] [--train-steps 60]

Per size: samples/s of the whole sub-sampled ELBO step (forward + backward + Adam) in fp32 and
under bf16 autocast, and the peak GPU memory (``torch.cuda.max_memory_allocated``) — the thesis
reported about 3.0 / 8.5 / 10.5 GiB at batch 64. Then ``rmvae.train.train`` on ``accelerator=gpu``
for ``--train-steps`` steps on the cached chorales (the folder ``data/cache`` must exist: run
``rmvae data`` first, it needs music21), so checkpointing, logging and validation run on the GPU too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from rmvae.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig
from rmvae.module import RMVAEModule

PITCHES, LOW, VOICES, MEASURES = 54, 31, 4, 8


def random_batch(batch: int, device) -> dict:
    """Token windows with chorale-like statistics: ~70% holds, the rest pitches and rests."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, MEASURES + 1, VOICES, 16)
    tokens = torch.randint(0, PITCHES + 1, shape, generator=generator)
    tokens[torch.rand(shape, generator=generator) < 0.7] = PITCHES + 1
    tokens[..., 0] = torch.randint(0, PITCHES, shape[:-1], generator=generator)
    return {"inputs": tokens[:, :MEASURES].to(device), "target": tokens[:, MEASURES].to(device),
            "input_mask": torch.ones(batch, MEASURES, VOICES, dtype=torch.bool, device=device),
            "target_mask": torch.ones(batch, VOICES, dtype=torch.bool, device=device)}


def throughput(size: str, batch: int, bf16: bool, steps: int = 20) -> dict:
    config = Config(model=ModelConfig(size=size), loss=LossConfig(n_subsets=2))
    info = {"encoding": "mono", "low": LOW, "high": LOW + PITCHES - 1, "n_voices": VOICES}
    module = RMVAEModule(config.to_dict(), info).cuda().train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    data = random_batch(batch, "cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(steps + 3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = module.model_step(data, "train")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return {"size": size, "precision": "bf16-mixed" if bf16 else "fp32",
            "parameters": module.model.n_parameters(),
            "samples_per_s": round(batch / statistics.median(times), 1),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}


def short_run(steps: int) -> dict:
    from rmvae.train import train

    config = Config(data=DataConfig(), model=ModelConfig(size="medium"),
                    train=TrainConfig(max_steps=steps, accelerator="gpu", devices=1, wandb=False,
                                      precision="bf16-mixed", limit_val_batches=0.5, deterministic=False))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train(config, out, progress_bar=False)
        result["seconds"] = round(time.perf_counter() - start, 1)
        import pandas as pd

        metrics = pd.read_csv(f"{out}/metrics.csv")
        result["val_recon_nll"] = metrics["val/recon_nll"].dropna().tolist()
        result["val_acc"] = metrics["val/acc"].dropna().tolist()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "medium", "big"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=60)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
    for size in args.sizes:
        for bf16 in (False, True):
            print(json.dumps(throughput(size, args.batch, bf16)), flush=True)
    if args.train_steps:
        print(json.dumps(short_run(args.train_steps)), flush=True)


if __name__ == "__main__":
    main()
