"""Training throughput of the RMVAE on CPU: samples/s, FLOPs, share of peak, memory, bf16.

    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py [--sizes small medium big] [--threads 2]
        [--seconds 10] [--no-bf16] [--recon-measures 2] [--profile]
        [--accuracy [--accuracy-steps 300 --accuracy-seeds 0 1]]

Setting: the thesis design, default widths, mono encoding, P = 54 pitches, 4 voices, 8 input
measures, z_dim 32, batch 64, ``torch.set_num_threads(--threads)``; one subprocess per size, so
its peak RSS (``ru_maxrss``) is that size's alone. Per size, ``RMVAEModule.model_step`` in train
mode + backward + Adam step (no clipping, no logging) of a module built with:

- **full term**: ``loss.elbo_terms = "full"``, the full-set ELBO term alone (input reconstruction,
  target prediction, KL and music losses); **sub-sampled**: the default ``"subsampled"``, the
  whole sub-sampled ELBO (full set + each voice + k = 2 subsets).
- **bf16**: the same under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (Lightning's
  ``--precision bf16-mixed``: parameters, gradients and Adam stay fp32).
- **LSTM ceiling**: the profiler's share of the fp32 full-term step in the LSTM kernels, the
  samples/s if everything else were free, and the share of peak one voice's encoder LSTM reaches
  alone on the same shapes.
- **recon k / recon off**: the fp32 full term with ``loss.recon_inputs_measures = k`` (k random
  input measures per window decoded instead of all T, scaled by T/k) and with
  ``loss.recon_inputs = false`` (only the target decoded, as in the original model).

samples/s = batch / median step time (the median resists other jobs on a shared machine).
FLOPs: ``FlopCounterMode``'s count of a step's forward + backward on the real module, oneDNN off
so that the LSTMs are counted (benchmarks/flops.py). Peak: the best fp32 GFLOP/s of ``torch.mm``
and ``F.linear`` on square 1024–2048 matrices, before and after each size's runs. % of peak =
(FLOPs / median step time) / peak. ``--accuracy``: fp32 against bf16-mixed training of the small
model (benchmarks/bf16_accuracy.py).

Goals (full term, fp32): ≥ 150 / 45 / 13 samples/s for small / medium / big and ≥ 45 % of peak
for medium and big.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from functools import partial
from pathlib import Path

# benchmarks/ is the script's folder
from bf16_accuracy import accuracy_check, accuracy_table
from flops import counted_flops, fastest_seconds, measure_peak
from machine import OtherLoad, load_average, wait_for_quiet
from throughput_report import GOAL_SAMPLES, report

BATCH, MEASURES, VOICES, PITCHES, Z_DIM, LOW, STEPS = 64, 8, 4, 54, 32, 31, 16


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(size: str, **loss):
    """The thesis design with the ``loss`` overrides, seeded (every variant has the same weights), and a batch."""
    import torch

    from rmvae.config import Config, TrainConfig, apply_overrides
    from rmvae.profiles import THESIS_DESIGN
    from rmvae.module import RMVAEModule

    config = apply_overrides(Config(train=TrainConfig(wandb=False)), {
        **THESIS_DESIGN, "model.size": size, "model.z_dim": Z_DIM, **{f"loss.{k}": v for k, v in loss.items()}})
    info = {"encoding": "mono", "low": LOW, "high": LOW + PITCHES - 1, "n_voices": VOICES}
    torch.manual_seed(0)
    module = RMVAEModule(config.to_dict(), info)
    assert module.model.n_pitches == PITCHES
    module.train()
    generator = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(0, PITCHES + 2, (BATCH, MEASURES, VOICES, STEPS), generator=generator),
             "input_mask": torch.ones(BATCH, MEASURES, VOICES, dtype=torch.bool),
             "target": torch.randint(0, PITCHES + 2, (BATCH, VOICES, STEPS), generator=generator),
             "target_mask": torch.ones(BATCH, VOICES, dtype=torch.bool)}
    return module, batch


def _train_step(module, batch, optimizer, bf16: bool) -> None:
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _, _ = module.model_step(batch, "train")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _timed_steps(module, batch, optimizer, bf16: bool, seconds: float, warmup: int = 2, min_steps: int = 3) -> dict:
    """Median / mean / min seconds of a training step, and the cores other processes used meanwhile."""
    for _ in range(warmup):
        _train_step(module, batch, optimizer, bf16)
    times, started = [], time.perf_counter()
    with OtherLoad() as load:
        while len(times) < min_steps or time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            _train_step(module, batch, optimizer, bf16)
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times),
            "steps": len(times), "other_cores": load.cores, "load": load_average()}


def _forward_backward(module, batch) -> None:
    """One ``model_step`` + backward, what the FLOPs are counted of (no optimizer step)."""
    loss, _, _ = module.model_step(batch, "train")
    loss.backward()


def _profiled(module, batch, optimizer, bf16: bool, steps: int = 1):
    """``torch.profiler``'s per-operator averages over ``steps`` training steps, the share of self CPU time in
    the LSTM kernels (``mkldnn_rnn_layer``, ``aten::lstm``, backward: samples/s ≤ measured / share), their names."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            _train_step(module, batch, optimizer, bf16)
    events = prof.key_averages()
    lstm = [e for e in events if "lstm" in e.key.lower() or "rnn" in e.key.lower()]
    share = sum(e.self_cpu_time_total for e in lstm) / sum(e.self_cpu_time_total for e in events)
    return events, share, sorted({e.key for e in lstm})


def lstm_kernel_rate(module, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of voice 0's encoder LSTM alone (forward + backward) over its B·(T+1) measures × 16
    steps, the call the model makes: its share of peak bounds that of any step made of these calls."""
    import torch

    stack = module.model.encoders[0].note_lstm
    x = torch.randn(BATCH * (MEASURES + 1), STEPS, stack.lstms[0].input_size, requires_grad=True)

    def step():
        out, _ = stack(x)
        out.sum().backward()

    flops = counted_flops(step, native_lstm=True)["total"]
    rate = flops / fastest_seconds(step, seconds) / 1e9
    module.zero_grad(set_to_none=True)
    return rate


def run_size(size: str, threads: int, seconds: float, bf16: bool, profile: bool, recon_measures: int = 0) -> dict:
    import torch

    torch.set_num_threads(threads)
    result: dict = {"size": size, "threads": torch.get_num_threads(), "torch": torch.__version__, "batch": BATCH,
                    "measures": MEASURES, "recon_measures": recon_measures, "load_start": load_average(),
                    "peak_before": measure_peak(), "runs": {}, "flops": {}}
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    variants = {"full": ({"elbo_terms": "full"}, precisions), "sub": ({"elbo_terms": "subsampled"}, precisions),
                "recon_k": ({"elbo_terms": "full", "recon_inputs_measures": recon_measures}, precisions),
                "recon_off": ({"elbo_terms": "full", "recon_inputs": False}, ("fp32",))}
    if not recon_measures:
        del variants["recon_k"]
    for name, (loss, timed) in variants.items():  # the timings first, one module at a time
        module, batch = _build(size, **loss)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        if name == "full":
            result.update(params=module.model.n_parameters(), rss_built_mib=_rss_mib())
        for precision in timed:
            key = f"{name}_{precision}" if name in ("full", "sub") else f"full_{precision}_{name}"
            result["runs"][key] = _timed_steps(module, batch, optimizer, precision == "bf16", seconds)
            if name in ("full", "sub"):
                result[f"rss_after_{key}_mib"] = _rss_mib()
        del module, optimizer
    for name, (loss, _) in variants.items():  # then the FLOP counts, and the profiles of the full term
        module, batch = _build(size, **loss)
        result["flops"][name] = {counted: counted_flops(partial(_forward_backward, module, batch), counted == "native")
                                 for counted in ("native", "as_run")}
        if name != "full":
            continue
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        for _ in range(2):  # warm, as before the timed steps
            _train_step(module, batch, optimizer, False)
        _, result["lstm_share_full_fp32"], result["lstm_ops"] = _profiled(module, batch, optimizer, False)
        result["lstm_kernel_gflops"] = lstm_kernel_rate(module)
        for precision in precisions if profile else ():
            events, share, _ = _profiled(module, batch, optimizer, precision == "bf16", steps=2)
            result[f"profile_full_{precision}"] = (
                f"{events.table(sort_by='self_cpu_time_total', row_limit=18)}\nLSTM kernels: {share:.0%} of self "
                f"CPU time; {sum(e.count for e in events) // 2} operator calls per step\n")
    result.update(peak_after=measure_peak(), peak_bf16=measure_peak(dtype=torch.bfloat16), rss_peak_mib=_rss_mib(),
                  load_end=load_average())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "medium", "big"], choices=list(GOAL_SAMPLES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement (≥ 3 steps)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--recon-measures", type=int, default=2, metavar="K",
                        help="also time the full term with loss.recon_inputs_measures=K (0: skip)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="CORES",
                        help="before each size, wait (up to 30 min) until other processes use fewer than CORES cores")
    parser.add_argument("--accuracy", action="store_true", help="fp32 vs bf16-mixed training of the small model")
    parser.add_argument("--accuracy-only", action="store_true", help="only the accuracy check")
    parser.add_argument("--accuracy-steps", type=int, default=300)
    parser.add_argument("--accuracy-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--accuracy-pieces", type=int, default=40)
    parser.add_argument("--accuracy-limit-val", type=float, default=0.15,
                        help="train.limit_val_batches during training (the final check uses the whole val set)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*TF32 acceleration on top of oneDNN.*")

    if args.worker:
        print(json.dumps(run_size(args.worker, args.threads, args.seconds, args.bf16, args.profile,
                                  args.recon_measures)))
        return 0

    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} threads={args.threads} "
          f"cpus={len(os.sched_getaffinity(0))} load average {load_average()}", flush=True)
    results = []
    for size in [] if args.accuracy_only else args.sizes:
        if args.wait_quiet is not None:
            others = wait_for_quiet(args.wait_quiet)
            print(f"  other processes: {others:.2f} cores (load {load_average()})", flush=True)
        command = [sys.executable, __file__, "--worker", size, "--threads", str(args.threads),
                   "--seconds", str(args.seconds), "--recon-measures", str(args.recon_measures)] \
            + ([] if args.bf16 else ["--no-bf16"]) + (["--profile"] if args.profile else [])
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {size} measured in {time.perf_counter() - started:.0f} s (load {load_average()})", flush=True)
    if results:
        print(f"\n{report(results, args.bf16)}")
    accuracy = None
    if args.accuracy or args.accuracy_only:
        accuracy = accuracy_check(args.accuracy_steps, args.accuracy_seeds, args.threads, args.accuracy_pieces,
                                  args.accuracy_limit_val)
        print(accuracy_table(accuracy, args.accuracy_seeds))
    if args.json:
        args.json.write_text(json.dumps({"sizes": results, "accuracy": accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
