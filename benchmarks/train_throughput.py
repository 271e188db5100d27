"""Training throughput of the RMVAE on CPU (issue 4): samples/s, FLOPs, share of peak, memory, bf16.

    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py [--sizes small medium big] [--threads 2]
        [--seconds 10] [--no-bf16] [--recon-measures 2] [--profile]
        [--accuracy [--accuracy-steps 300 --accuracy-seeds 0 1]]

Setting: default widths, mono encoding, P = 54 pitches, 4 voices, 8 input measures, z_dim 32,
batch 64, ``torch.set_num_threads(--threads)``. One subprocess per size, so its peak RSS
(``ru_maxrss``) is that size's alone. Per size:

- **full term**: the full-set ELBO term alone, as :meth:`RMVAEModule.model_step` computes it
  (encode the window and the target measure, ``from_experts`` on the full mask with input
  reconstruction and target prediction, reconstruction + KL + music losses) + backward + Adam
  step. It is ``model_step`` with ``elbo_masks`` reduced to the ``"full"`` term.
- **sub-sampled**: the whole sub-sampled ELBO (full set + each voice + k = 2 subsets),
  ``model_step`` in train mode + backward + Adam step (no gradient clipping, no logging).
- **bf16**: the same under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (what Lightning's
  ``--precision bf16-mixed`` does; parameters, gradients and Adam stay fp32).

- **LSTM ceiling**: the share of the fp32 full-term step spent in the LSTM kernels (profiler),
  the samples/s the step would reach if everything else were free, and the share of peak one
  voice's encoder LSTM reaches alone on the same shapes (what bounds the step's share).
- **recon k / recon off**: the fp32 full term with ``loss.recon_inputs_measures = k``
  (``--recon-measures``: k random input measures per window decoded instead of all T, scaled
  by T/k) and with ``loss.recon_inputs = false`` (only the target decoded, as in the original
  model, whose FLOPs the reference numbers below correspond to).

samples/s = batch / median step time (the median resists other jobs on a shared machine).

FLOPs of one training step are counted analytically from the matmuls only: every Linear
2·rows·in·out, every LSTM layer and direction 2·4·(in + hidden)·hidden per sequence step,
×3 for forward + backward (elementwise work, LayerNorm, softmax and the tiny loss matmuls are
left out). They are cross-checked with ``torch.utils.flop_counter.FlopCounterMode``.

Peak: the best fp32 GFLOP/s of ``torch.mm`` and of ``torch.nn.functional.linear`` on square
1024–2048 matrices, measured in each size's subprocess before and after its runs (both
printed; the best is the peak). % of peak = achieved GFLOP/s (analytic FLOPs of the full term /
its median step time) / peak.

``--accuracy`` also trains the small model for ``--accuracy-steps`` steps with ``rmvae.train.train``
on ``data.max_pieces=40`` (W&B off), once with ``train.precision=32-true`` and once with
``bf16-mixed`` (nothing else differs), per seed, and reports the validation token accuracy of
the last checkpoint on the whole validation set; a second seed gives the seed-to-seed noise.

Goals (full term, fp32): ≥ 150 / 45 / 13 samples/s for small / medium / big and ≥ 45 % of peak
for medium and big.
"""
from __future__ import annotations

import argparse
import json
import warnings
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SAMPLES = {"small": 150, "medium": 45, "big": 13}
GOAL_PEAK_SHARE = {"medium": 0.45, "big": 0.45}
REFERENCE = {"small": (130, 0.34), "medium": (37, 0.42), "big": (11, 0.47)}
BATCH, MEASURES, VOICES, PITCHES, Z_DIM, LOW = 64, 8, 4, 54, 32, 31
STEPS = 16


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def busy_cpu_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all processes, /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by *other* processes while a block runs: machine busy time − this process's CPU time."""

    def __enter__(self):
        self.busy, self.own, self.wall = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        self.cores = max(0.0, (busy_cpu_seconds() - self.busy) - (time.process_time() - self.own)) / max(wall, 1e-9)
        return False


def wait_for_quiet(max_cores: float, window: float = 5.0, timeout: float = 1800.0) -> float:
    """Block until other processes use less than ``max_cores`` over ``window`` s (or ``timeout``); returns that load."""
    deadline = time.perf_counter() + timeout
    while True:
        with OtherLoad() as load:
            time.sleep(window)
        if load.cores < max_cores or time.perf_counter() > deadline:
            return load.cores


# --- analytic FLOPs ---------------------------------------------------------------------------


def _linear(rows: int, fan_in: int, fan_out: int) -> int:
    return 2 * rows * fan_in * fan_out


def _fc(rows: int, fan_in: int, widths) -> tuple[int, int]:
    flops = 0
    for width in widths:
        flops += _linear(rows, fan_in, width)
        fan_in = width
    return flops, fan_in


def _lstm(sequences: int, length: int, fan_in: int, widths, bidirectional: bool) -> tuple[int, int]:
    """Gates of every layer and direction: 4·(in + hidden)·hidden multiply-adds per sequence step."""
    directions = 2 if bidirectional else 1
    flops = 0
    for hidden in widths:
        flops += directions * 2 * 4 * (fan_in + hidden) * hidden * sequences * length
        fan_in = directions * hidden
    return flops, fan_in


def forward_flops(layers: dict, measures_encoded: int, decoded: list[int], temporal_runs: int,
                  batch: int = BATCH, measures: int = MEASURES, voices: int = VOICES, pitches: int = PITCHES,
                  z_dim: int = Z_DIM) -> dict[str, int]:
    """Matmul FLOPs of one forward pass, per part.

    Args:
        layers: ``ModelConfig.layers()``.
        measures_encoded: measures each voice's encoder reads (B·(T+1)).
        decoded: latents each decoder call decodes, one entry per call (per ELBO term).
        temporal_runs: temporal-LSTM passes (one per ELBO term).
    """
    features = pitches + 2
    n = measures_encoded
    enc, width = _fc(n * STEPS, features, layers["frame_fc"])
    lstm, width = _lstm(n, STEPS, width, layers["note_lstm"], True)
    enc_lstm = lstm
    fc, width = _fc(n, width, layers["measure_fc"])
    enc += fc + 2 * _linear(n, width, z_dim)
    dec = dec_lstm = 0
    measure_widths, frame_widths = tuple(reversed(layers["measure_fc"])), tuple(reversed(layers["frame_fc"]))
    for m in decoded:
        fc, width = _fc(m, z_dim, measure_widths)
        dec += fc + _linear(m, width, STEPS * frame_widths[0])
        lstm, width = _lstm(m, STEPS, frame_widths[0], tuple(reversed(layers["note_lstm"])), True)
        dec_lstm += lstm
        fc, width = _fc(m * STEPS, width, frame_widths)
        dec += fc + _linear(m * STEPS, width, pitches + 2)  # pitch (P+1) and hold (1) heads
    temporal_width = layers["temporal_width"]
    temporal, _ = _lstm(batch, measures, z_dim + voices, (temporal_width,) * layers["temporal_layers"], False)
    temporal = temporal_runs * (temporal + 2 * _linear(batch, temporal_width, z_dim))
    parts = {"encoder FC": voices * enc, "encoder LSTM": voices * enc_lstm, "decoder FC": voices * dec,
             "decoder LSTM": voices * dec_lstm, "temporal": temporal}
    parts["total"] = sum(parts.values())
    return parts


def step_flops(layers: dict, mode: str, n_terms: int) -> dict[str, int]:
    """Analytic forward FLOPs of one step: ``full`` (one ELBO term) or ``sub`` (every term)."""
    encoded = BATCH * (MEASURES + 1)
    if mode == "full":
        return forward_flops(layers, encoded, [BATCH * (MEASURES + 1)], 1)
    return forward_flops(layers, encoded, [BATCH * (MEASURES + 1)] + [BATCH] * (n_terms - 1), n_terms)


# --- peak -------------------------------------------------------------------------------------


def measure_peak(sizes=(1024, 1536, 2048), dtype=None, seconds: float = 0.6) -> dict[str, float]:
    """Best GFLOP/s of torch.mm and F.linear (x @ W^T, oneDNN) on square matrices."""
    import torch
    from torch.nn import functional as F

    dtype = dtype or torch.float32
    best = {"mm": 0.0, "linear": 0.0}
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        for name, fn in (("mm", lambda: torch.mm(a, b)), ("linear", lambda: F.linear(a, b))):
            fn()
            started, reps, fastest = time.perf_counter(), 0, float("inf")
            while reps < 3 or time.perf_counter() - started < seconds:
                t0 = time.perf_counter()
                fn()
                fastest = min(fastest, time.perf_counter() - t0)
                reps += 1
            best[name] = max(best[name], 2 * n ** 3 / fastest / 1e9)
    return best


# --- one size, in its own process -------------------------------------------------------------


def _build(size: str, **loss):
    import torch

    from rmvae.config import THESIS_DESIGN, Config, LossConfig, TrainConfig, apply_overrides
    from rmvae.module import RMVAEModule

    # The FLOP model below is the thesis design's (RNN encoders, temporal LSTM over z, z-only decoders).
    config = apply_overrides(Config(loss=LossConfig(**loss), train=TrainConfig(wandb=False)),
                             {**THESIS_DESIGN, "model.size": size, "model.z_dim": Z_DIM})
    info = {"encoding": "mono", "low": LOW, "high": LOW + PITCHES - 1, "n_voices": VOICES}
    module = RMVAEModule(config.to_dict(), info)
    assert module.model.n_pitches == PITCHES
    module.train()
    generator = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(0, PITCHES + 2, (BATCH, MEASURES, VOICES, STEPS), generator=generator),
             "input_mask": torch.ones(BATCH, MEASURES, VOICES, dtype=torch.bool),
             "target": torch.randint(0, PITCHES + 2, (BATCH, VOICES, STEPS), generator=generator),
             "target_mask": torch.ones(BATCH, VOICES, dtype=torch.bool)}
    return module, batch


def _set_mode(module, mode: str) -> None:
    """``"sub"``: the whole sub-sampled ELBO; ``"full"``: only its full-set term (``model_step`` unchanged otherwise)."""
    whole = type(module).elbo_masks.__get__(module)
    if mode == "full":
        module.elbo_masks = lambda batch_size, device: whole(batch_size, device)[:1]
    else:
        module.elbo_masks = whole


def _timed_steps(module, batch, optimizer, bf16: bool, seconds: float, warmup: int = 2,
                 min_steps: int = 3) -> dict:
    """Median / mean / min seconds of a training step, and the cores other processes used meanwhile."""
    import torch

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = module.model_step(batch, "train")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    times, started = [], time.perf_counter()
    with OtherLoad() as load:
        while len(times) < min_steps or time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times),
            "steps": len(times), "other_cores": load.cores, "load": load_average()}


def _counted_flops(module, batch, native_lstm: bool = False) -> tuple[int, dict[str, int]]:
    """FlopCounterMode's count of one forward + backward, and its per-operator totals.

    FlopCounterMode has no formula for the fused oneDNN LSTM (``mkldnn_rnn_layer``) that runs on
    CPU, so that count covers the FC layers only; with ``native_lstm`` oneDNN is switched off
    and the LSTMs run as ATen's cell loop of ``addmm``/``mm``, which it does count.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=not native_lstm), counter:
        loss, _, _ = module.model_step(batch, "train")
        loss.backward()
    module.zero_grad(set_to_none=True)
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops(), per_op


def _is_lstm(event) -> bool:
    """A profiler event of the LSTM kernels (oneDNN's ``mkldnn_rnn_layer``, ``aten::lstm``, their backward)."""
    return "lstm" in event.key.lower() or "rnn" in event.key.lower()


def _profiled_steps(module, batch, optimizer, bf16: bool, steps: int = 1):
    """``torch.profiler``'s per-operator averages over ``steps`` training steps."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _, _ = module.model_step(batch, "train")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return prof.key_averages()


def _lstm_share(events) -> float:
    """Share of the self CPU time spent inside the LSTM kernels (forward + backward).

    It bounds what any change outside the LSTMs can buy: samples/s ≤ measured / share.
    """
    return sum(e.self_cpu_time_total for e in events if _is_lstm(e)) / sum(e.self_cpu_time_total for e in events)


def lstm_kernel_rate(module, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of voice 0's encoder LSTM alone (forward + backward) on the full term's shapes.

    One voice's note LSTM over its B·(T+1) measures × 16 steps, the call the model makes: the
    share of peak this reaches bounds the share any step made of these calls can reach.
    """
    import torch

    stack = module.model.encoders[0].note_lstm
    width = stack.lstms[0].input_size
    x = torch.randn(BATCH * (MEASURES + 1), STEPS, width, requires_grad=True)
    layers = module.config.model.layers()
    flops = 3 * _lstm(BATCH * (MEASURES + 1), STEPS, width, layers["note_lstm"], True)[0]
    fastest, started, reps = float("inf"), time.perf_counter(), 0
    while reps < 3 or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        out, _ = stack(x)
        out.sum().backward()
        fastest = min(fastest, time.perf_counter() - t0)
        reps += 1
    module.zero_grad(set_to_none=True)
    return flops / fastest / 1e9


def _profile(module, batch, optimizer, bf16: bool, rows: int = 18) -> str:
    events = _profiled_steps(module, batch, optimizer, bf16, steps=2)
    table = events.table(sort_by="self_cpu_time_total", row_limit=rows)
    n_ops = sum(e.count for e in events)
    return f"{table}\nLSTM kernels: {_lstm_share(events):.0%} of self CPU time; {n_ops // 2} operator calls per step\n"


def run_size(size: str, threads: int, seconds: float, bf16: bool, profile: bool, recon_measures: int = 0) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    result: dict = {"size": size, "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_start": load_average()}
    result["peak_before"] = measure_peak()
    module, batch = _build(size)
    layers = module.config.model.layers()
    n_terms = len(module.elbo_masks(BATCH, "cpu"))
    result["params"] = module.model.n_parameters()
    result["n_terms"] = n_terms
    result["rss_built_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["flops_fwd"] = {mode: step_flops(layers, mode, n_terms) for mode in ("full", "sub")}
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    runs = {}
    for mode in ("full", "sub"):
        _set_mode(module, mode)
        for precision in (("fp32", "bf16") if bf16 else ("fp32",)):
            runs[f"{mode}_{precision}"] = _timed_steps(module, batch, optimizer, precision == "bf16", seconds)
            result[f"rss_after_{mode}_{precision}_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["runs"] = runs
    _set_mode(module, "full")
    events = _profiled_steps(module, batch, optimizer, False)
    result["lstm_share_full_fp32"] = _lstm_share(events)
    result["lstm_ops"] = sorted({e.key for e in events if _is_lstm(e)})  # which kernels ran: oneDNN or ATen cells
    result["lstm_kernel_gflops"] = lstm_kernel_rate(module)
    # The same fp32 full term with fewer input measures decoded per window: k of T
    # (loss.recon_inputs_measures = k), and none (loss.recon_inputs = false: the original's
    # objective, which decoded only the target measure).
    variants = {"recon_k": dict(recon_inputs_measures=recon_measures), "recon_off": dict(recon_inputs=False)}
    decoded = {"recon_k": recon_measures + 1, "recon_off": 1}
    for name, loss in variants.items():
        if name == "recon_k" and not recon_measures:
            continue
        variant, _ = _build(size, **loss)
        variant.load_state_dict(module.state_dict())
        _set_mode(variant, "full")
        variant_optimizer = torch.optim.Adam(variant.parameters(), lr=1e-3)
        result[f"flops_fwd_{name}"] = forward_flops(layers, BATCH * (MEASURES + 1), [BATCH * decoded[name]], 1)
        for precision in (("fp32", "bf16") if bf16 and name == "recon_k" else ("fp32",)):
            runs[f"full_{precision}_{name}"] = _timed_steps(variant, batch, variant_optimizer, precision == "bf16",
                                                            seconds)
        del variant, variant_optimizer
    result["recon_measures"] = recon_measures
    torch.manual_seed(0)
    result["counted_full"], result["counted_full_ops"] = _counted_flops(module, batch)
    torch.manual_seed(0)
    result["counted_full_native"], result["counted_full_native_ops"] = _counted_flops(module, batch, native_lstm=True)
    _set_mode(module, "sub")
    torch.manual_seed(0)
    result["counted_sub"], _ = _counted_flops(module, batch)
    torch.manual_seed(0)
    result["counted_sub_native"], _ = _counted_flops(module, batch, native_lstm=True)
    if profile:
        _set_mode(module, "full")
        result["profile_full_fp32"] = _profile(module, batch, optimizer, False)
        if bf16:
            result["profile_full_bf16"] = _profile(module, batch, optimizer, True)
    result["peak_after"] = measure_peak()
    result["peak_bf16"] = measure_peak(dtype=torch.bfloat16)
    result["rss_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_end"] = load_average()
    return result


# --- accuracy check: fp32 vs bf16-mixed --------------------------------------------------------


def accuracy_check(steps: int, seeds: list[int], threads: int, max_pieces: int, limit_val: float) -> list[dict]:
    import torch

    from rmvae.config import THESIS_DESIGN, Config, apply_overrides
    from rmvae.data.datamodule import ChoraleDataModule
    from rmvae.module import load_module
    from rmvae.train import train

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
                out = Path(root) / f"{precision}-{seed}"
                load = load_average()
                started = time.perf_counter()
                result = train(config, out, progress_bar=False)
                seconds = time.perf_counter() - started
                module = load_module(result["last_checkpoint"])
                module.eval()
                datamodule = ChoraleDataModule(config.data)
                datamodule.setup()
                hits = nll = count = hold = repeat = 0.0
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                    for batch in datamodule.val_dataloader():
                        _, logs, output = module.model_step(batch, "val")
                        n = batch["inputs"].shape[0]
                        hits += float(module.accuracy_logs(output, batch)["acc"]) * n
                        baselines = module.baseline_logs(batch)
                        hold += float(baselines["baseline_hold_acc"]) * n
                        repeat += float(baselines["baseline_repeat_acc"]) * n
                        nll += float(logs["recon_nll"]) * n
                        count += n
                rows.append({"precision": precision, "seed": seed, "steps": result["steps"], "train_s": seconds,
                             "val_acc": hits / count, "val_recon_nll": nll / count, "val_windows": int(count),
                             "baseline_hold_acc": hold / count, "baseline_repeat_acc": repeat / count,
                             "load": f"{load} → {load_average()}"})
                print(f"  {precision:10s} seed {seed}: val acc {hits / count:.4f}, recon NLL {nll / count:.2f}, "
                      f"{result['steps']} steps in {seconds:.0f} s (load {rows[-1]['load']})", flush=True)
    return rows


# --- report -----------------------------------------------------------------------------------


def report(results: list[dict], bf16: bool) -> str:
    lines = []
    peak_rows = []
    for r in results:
        peak = max(max(r["peak_before"].values()), max(r["peak_after"].values()))
        r["peak"] = peak
        peak_rows.append(f"  {r['size']:6s} before: mm {r['peak_before']['mm']:6.1f}, linear {r['peak_before']['linear']:6.1f}"
                         f" | after: mm {r['peak_after']['mm']:6.1f}, linear {r['peak_after']['linear']:6.1f}"
                         f" | bf16 mm {r['peak_bf16']['mm']:6.1f}, linear {r['peak_bf16']['linear']:6.1f}"
                         f"  → fp32 peak {peak:.1f} GFLOP/s")
    lines.append(f"fp32 peak (GFLOP/s, {results[0]['threads']} threads, best over n = 1024, 1536, 2048):")
    lines += peak_rows
    lines.append("")
    head = (f"{'size':6s} {'params':>9s} {'full fp32':>10s} {'goal':>5s} {'ref':>4s} {'sub fp32':>9s}"
            + (f" {'full bf16':>10s} {'×':>5s} {'sub bf16':>9s} {'×':>5s}" if bf16 else "")
            + f" {'GFLOP/step':>11s} {'GFLOP/s':>8s} {'%peak':>6s} {'goal':>5s} {'ref':>4s}"
            + f" {'sub GFLOP':>10s} {'%peak':>6s} {'RSS MiB':>8s}")
    lines.append("samples/s = 64 / median step time; GFLOP/step = analytic matmul FLOPs of one training step "
                 "(×3 forward); %peak of the fp32 peak")
    lines.append(head)
    lines.append("-" * len(head))
    for r in results:
        size, runs = r["size"], r["runs"]
        sps = {k: BATCH / v["median_s"] for k, v in runs.items()}
        full_gflop = 3 * r["flops_fwd"]["full"]["total"] / 1e9
        sub_gflop = 3 * r["flops_fwd"]["sub"]["total"] / 1e9
        achieved = full_gflop / runs["full_fp32"]["median_s"]
        sub_achieved = sub_gflop / runs["sub_fp32"]["median_s"]
        goal_sps, goal_share = GOAL_SAMPLES[size], GOAL_PEAK_SHARE.get(size)
        ref_sps, ref_share = REFERENCE[size]
        row = (f"{size:6s} {r['params']:9,d} {sps['full_fp32']:10.1f} {goal_sps:5d} {ref_sps:4d} {sps['sub_fp32']:9.1f}")
        if bf16:
            row += (f" {sps['full_bf16']:10.1f} {sps['full_bf16'] / sps['full_fp32']:5.2f}"
                    f" {sps['sub_bf16']:9.1f} {sps['sub_bf16'] / sps['sub_fp32']:5.2f}")
        row += (f" {full_gflop:11.2f} {achieved:8.1f} {achieved / r['peak']:6.1%}"
                f" {(f'{goal_share:.0%}' if goal_share else '-'):>5s} {ref_share:4.0%}"
                f" {sub_gflop:10.2f} {sub_achieved / r['peak']:6.1%} {r['rss_peak_mib']:8.0f}")
        lines.append(row)
    lines.append("")
    lines.append("verdict (full term fp32): " + "; ".join(
        f"{r['size']} {BATCH / r['runs']['full_fp32']['median_s']:.0f}/{GOAL_SAMPLES[r['size']]} samples/s "
        f"{'met' if BATCH / r['runs']['full_fp32']['median_s'] >= GOAL_SAMPLES[r['size']] else 'NOT met'}"
        + (f", {3 * r['flops_fwd']['full']['total'] / 1e9 / r['runs']['full_fp32']['median_s'] / r['peak']:.0%}"
           f"/{GOAL_PEAK_SHARE[r['size']]:.0%} of peak "
           f"{'met' if 3 * r['flops_fwd']['full']['total'] / 1e9 / r['runs']['full_fp32']['median_s'] / r['peak'] >= GOAL_PEAK_SHARE[r['size']] else 'NOT met'}"
           if r["size"] in GOAL_PEAK_SHARE else "")
        for r in results))
    lines.append("")
    lines.append("LSTM kernels (oneDNN forward + backward) in the fp32 full-term step, and the samples/s that step "
                 "would reach if everything outside them took no time:")
    for r in results:
        share = r["lstm_share_full_fp32"]
        sps = BATCH / r["runs"]["full_fp32"]["median_s"]
        kernel = r["lstm_kernel_gflops"]
        lines.append(f"  {r['size']:6s} {share:.0%} of self CPU time → at most {sps / share:.0f} samples/s "
                     f"(goal {GOAL_SAMPLES[r['size']]}); one voice's encoder LSTM alone (fwd + bwd): "
                     f"{kernel:.0f} GFLOP/s = {kernel / r['peak']:.0%} of peak")
    titles = {"recon_k": f"loss.recon_inputs_measures = {results[0].get('recon_measures')} (k random input measures "
                         f"of {MEASURES} decoded per window, scaled by {MEASURES}/k)",
              "recon_off": "loss.recon_inputs = false (only the target measure decoded: the original objective)"}
    for name, title in titles.items():
        rows = [r for r in results if f"full_fp32_{name}" in r["runs"]]
        if not rows:
            continue
        lines.append("")
        lines.append(f"full term fp32 with {title}:")
        for r in rows:
            run = r["runs"][f"full_fp32_{name}"]
            sps = BATCH / run["median_s"]
            gflop = 3 * r[f"flops_fwd_{name}"]["total"] / 1e9
            achieved = gflop / run["median_s"]
            line = (f"  {r['size']:6s} {sps:6.1f} samples/s (×{sps / (BATCH / r['runs']['full_fp32']['median_s']):.2f}"
                    f" the default; goal {GOAL_SAMPLES[r['size']]}), {gflop:.1f} GFLOP/step, "
                    f"{achieved:.1f} GFLOP/s = {achieved / r['peak']:.0%} of peak")
            if f"full_bf16_{name}" in r["runs"]:
                line += f"; bf16-mixed {BATCH / r['runs'][f'full_bf16_{name}']['median_s']:.1f} samples/s"
            lines.append(line)
    lines.append("")
    lines.append("FLOPs of one training step (GFLOP): analytic (matmuls only, ×3 forward) vs FlopCounterMode "
                 "(forward + backward, as run: oneDNN LSTM not counted | oneDNN off: ATen LSTM cells counted):")
    for r in results:
        parts = r["flops_fwd"]["full"]
        lstm_share = (parts["encoder LSTM"] + parts["decoder LSTM"] + parts["temporal"]) / parts["total"]
        fc_part = 3 * (parts["encoder FC"] + parts["decoder FC"]) / 1e9
        lines.append(f"  {r['size']:6s} full term:   analytic {3 * parts['total'] / 1e9:8.2f} (LSTM gates {lstm_share:.0%}, "
                     f"FC {fc_part:.2f}) | counted as run {r['counted_full'] / 1e9:8.2f} | counted, oneDNN off "
                     f"{r['counted_full_native'] / 1e9:8.2f}")
        sub = r["flops_fwd"]["sub"]
        lines.append(f"  {'':6s} sub-sampled: analytic {3 * sub['total'] / 1e9:8.2f} {'':29s}| counted as run "
                     f"{r['counted_sub'] / 1e9:8.2f} | counted, oneDNN off {r['counted_sub_native'] / 1e9:8.2f}")
        lines.append("         full term by part (forward GFLOP): " + ", ".join(
            f"{k} {v / 1e9:.3f}" for k, v in parts.items() if k != "total"))
        lines.append(f"         operators counted as run: {', '.join(sorted(r['counted_full_ops']))}; oneDNN off: "
                     f"{', '.join(sorted(r['counted_full_native_ops']))}")
        lines.append(f"         LSTM operators that ran: {', '.join(r['lstm_ops']) or 'none'}")
    lines.append("")
    lines.append("timings: median / min / mean s per step (steps timed, cores used by other processes meanwhile); "
                 "memory (ru_maxrss MiB):")
    for r in results:
        timing = "; ".join(f"{k} {v['median_s']:.3f}/{v['min_s']:.3f}/{v['mean_s']:.3f} ({v['steps']}, "
                           f"others {v['other_cores']:.2f} cores)" for k, v in r["runs"].items())
        memory = ", ".join(f"{k[10:-4]} {v:.0f}" for k, v in r.items() if k.startswith("rss_after_"))
        lines.append(f"  {r['size']:6s} {timing}")
        lines.append(f"         RSS built {r['rss_built_mib']:.0f}, high-water after {memory}; peak {r['rss_peak_mib']:.0f}")
        lines.append(f"         load average: start {r['load_start']}, end {r['load_end']}")
    for r in results:
        for key in ("profile_full_fp32", "profile_full_bf16"):
            if key in r:
                lines.append(f"\n{r['size']} {key}:\n{r[key]}")
    return "\n".join(lines)


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
    if not args.accuracy_only:
        for size in args.sizes:
            if args.wait_quiet is not None:
                others = wait_for_quiet(args.wait_quiet)
                print(f"  other processes: {others:.2f} cores (load {load_average()})", flush=True)
            command = [sys.executable, __file__, "--worker", size, "--threads", str(args.threads),
                       "--seconds", str(args.seconds), "--recon-measures", str(args.recon_measures)] \
                + ([] if args.bf16 else ["--no-bf16"]) \
                + (["--profile"] if args.profile else [])
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {size} measured in {time.perf_counter() - started:.0f} s (load {load_average()})", flush=True)
        print()
        print(report(results, args.bf16))
    accuracy = None
    if args.accuracy or args.accuracy_only:
        print(f"\naccuracy check: small model, {args.accuracy_steps} steps, data.max_pieces={args.accuracy_pieces}, "
              f"32-true vs bf16-mixed, seeds {args.accuracy_seeds}", flush=True)
        accuracy = accuracy_check(args.accuracy_steps, args.accuracy_seeds, args.threads, args.accuracy_pieces,
                                  args.accuracy_limit_val)
        by = {(row["precision"], row["seed"]): row for row in accuracy}
        print(f"\n{'seed':>4s} {'fp32 acc':>9s} {'bf16 acc':>9s} {'Δ':>8s} {'fp32 NLL':>9s} {'bf16 NLL':>9s}")
        for seed in args.accuracy_seeds:
            a, b = by[("32-true", seed)], by[("bf16-mixed", seed)]
            print(f"{seed:4d} {a['val_acc']:9.4f} {b['val_acc']:9.4f} {b['val_acc'] - a['val_acc']:+8.4f} "
                  f"{a['val_recon_nll']:9.2f} {b['val_recon_nll']:9.2f}")
        if len(args.accuracy_seeds) > 1:
            fp32 = [by[("32-true", s)]["val_acc"] for s in args.accuracy_seeds]
            bf16 = [by[("bf16-mixed", s)]["val_acc"] for s in args.accuracy_seeds]
            print(f"baselines on the same windows: always hold {accuracy[0]['baseline_hold_acc']:.4f}, "
                  f"repeat the last measure {accuracy[0]['baseline_repeat_acc']:.4f}")
            print(f"seed-to-seed spread: fp32 {max(fp32) - min(fp32):.4f}, bf16 {max(bf16) - min(bf16):.4f}; "
                  f"mean fp32 {statistics.fmean(fp32):.4f}, bf16 {statistics.fmean(bf16):.4f}")
    if args.json:
        args.json.write_text(json.dumps({"sizes": results, "accuracy": accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
