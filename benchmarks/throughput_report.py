"""The printed report of benchmarks/train_throughput.py: samples/s, FLOPs and share of peak against the goals."""
from __future__ import annotations

from flops import lstm_flops  # benchmarks/ is the script's folder

GOAL_SAMPLES = {"small": 150, "medium": 45, "big": 13}
GOAL_PEAK_SHARE = {"medium": 0.45, "big": 0.45}
REFERENCE = {"small": (130, 0.34), "medium": (37, 0.42), "big": (11, 0.47)}


def _gflop(r: dict, name: str, counted: str = "native") -> float:
    """GFLOP of one training step of the run ``name`` (FlopCounterMode, forward + backward)."""
    return r["flops"][name][counted]["total"] / 1e9


def _rates(r: dict, run: str, flops: str) -> tuple[float, float, float]:
    """samples/s, GFLOP/s and share of the fp32 peak of one timed run."""
    seconds = r["runs"][run]["median_s"]
    return r["batch"] / seconds, _gflop(r, flops) / seconds, _gflop(r, flops) / seconds / r["peak"]


def _met(value: float, goal: float) -> str:
    return "met" if value >= goal else "NOT met"


def report(results: list[dict], bf16: bool) -> str:
    lines = [f"fp32 peak (GFLOP/s, {results[0]['threads']} threads, best over n = 1024, 1536, 2048):"]
    for r in results:
        before, after, half = r["peak_before"], r["peak_after"], r["peak_bf16"]
        r["peak"] = max(*before.values(), *after.values())
        lines.append(f"  {r['size']:6s} before: mm {before['mm']:6.1f}, linear {before['linear']:6.1f}"
                     f" | after: mm {after['mm']:6.1f}, linear {after['linear']:6.1f}"
                     f" | bf16 mm {half['mm']:6.1f}, linear {half['linear']:6.1f}"
                     f"  → fp32 peak {r['peak']:.1f} GFLOP/s")
    head = (f"{'size':6s} {'params':>9s} {'full fp32':>10s} {'goal':>5s} {'ref':>4s} {'sub fp32':>9s}"
            + (f" {'full bf16':>10s} {'×':>5s} {'sub bf16':>9s} {'×':>5s}" if bf16 else "")
            + f" {'GFLOP/step':>11s} {'GFLOP/s':>8s} {'%peak':>6s} {'goal':>5s} {'ref':>4s}"
            + f" {'sub GFLOP':>10s} {'%peak':>6s} {'RSS MiB':>8s}")
    lines += ["", f"samples/s = {results[0]['batch']} / median step time; GFLOP/step = FlopCounterMode's count of one "
              "training step (forward + backward, oneDNN off so that the LSTMs are counted); %peak of the fp32 peak",
              head, "-" * len(head)]
    verdicts = []
    for r in results:
        size, sps = r["size"], {k: r["batch"] / v["median_s"] for k, v in r["runs"].items()}
        goal_sps = GOAL_SAMPLES[size]
        _, achieved, share = _rates(r, "full_fp32", "full")
        _, _, sub_share = _rates(r, "sub_fp32", "sub")
        goal_share, (ref_sps, ref_share) = GOAL_PEAK_SHARE.get(size), REFERENCE[size]
        row = f"{size:6s} {r['params']:9,d} {sps['full_fp32']:10.1f} {goal_sps:5d} {ref_sps:4d} {sps['sub_fp32']:9.1f}"
        if bf16:
            row += (f" {sps['full_bf16']:10.1f} {sps['full_bf16'] / sps['full_fp32']:5.2f}"
                    f" {sps['sub_bf16']:9.1f} {sps['sub_bf16'] / sps['sub_fp32']:5.2f}")
        lines.append(row + f" {_gflop(r, 'full'):11.2f} {achieved:8.1f} {share:6.1%}"
                     f" {(f'{goal_share:.0%}' if goal_share else '-'):>5s} {ref_share:4.0%}"
                     f" {_gflop(r, 'sub'):10.2f} {sub_share:6.1%} {r['rss_peak_mib']:8.0f}")
        verdict = f"{size} {sps['full_fp32']:.0f}/{goal_sps} samples/s {_met(sps['full_fp32'], goal_sps)}"
        if goal_share:
            verdict += f", {share:.0%}/{goal_share:.0%} of peak {_met(share, goal_share)}"
        verdicts.append(verdict)
    lines += ["", "verdict (full term fp32): " + "; ".join(verdicts), "",
              "LSTM kernels (oneDNN forward + backward) in the fp32 full-term step, and the samples/s that step "
              "would reach if everything outside them took no time:"]
    for r in results:
        share, kernel = r["lstm_share_full_fp32"], r["lstm_kernel_gflops"]
        sps = r["batch"] / r["runs"]["full_fp32"]["median_s"]
        lines.append(f"  {r['size']:6s} {share:.0%} of self CPU time → at most {sps / share:.0f} samples/s "
                     f"(goal {GOAL_SAMPLES[r['size']]}); one voice's encoder LSTM alone (fwd + bwd): "
                     f"{kernel:.0f} GFLOP/s = {kernel / r['peak']:.0%} of peak")
    k, measures = results[0].get("recon_measures"), results[0]["measures"]
    titles = {"recon_k": f"loss.recon_inputs_measures = {k} (k random input measures of {measures} decoded per window, "
                         f"scaled by {measures}/k)",
              "recon_off": "loss.recon_inputs = false (only the target measure decoded: the original objective)"}
    for name, title in titles.items():
        rows = [r for r in results if f"full_fp32_{name}" in r["runs"]]
        lines += ["", f"full term fp32 with {title}:"] if rows else []
        for r in rows:
            sps, achieved, share = _rates(r, f"full_fp32_{name}", name)
            default = r["batch"] / r["runs"]["full_fp32"]["median_s"]
            line = (f"  {r['size']:6s} {sps:6.1f} samples/s (×{sps / default:.2f}"
                    f" the default; goal {GOAL_SAMPLES[r['size']]}), {_gflop(r, name):.1f} GFLOP/step, "
                    f"{achieved:.1f} GFLOP/s = {share:.0%} of peak")
            if f"full_bf16_{name}" in r["runs"]:
                line += f"; bf16-mixed {r['batch'] / r['runs'][f'full_bf16_{name}']['median_s']:.1f} samples/s"
            lines.append(line)
    lines += ["", "FLOPs of one training step (GFLOP, FlopCounterMode, forward + backward): oneDNN off (ATen LSTM "
              "cells counted: the GFLOP/step above) | as run (the oneDNN LSTM not counted):"]
    for r in results:
        native, as_run = r["flops"]["full"]["native"], r["flops"]["full"]["as_run"]
        parts = native["parts"]
        full = (f"{native['total'] / 1e9:8.2f} (note LSTMs {lstm_flops(parts) / native['total']:.0%}, "
                f"FC {(parts['encoder FC'] + parts['decoder FC']) / 1e9:.2f})")
        lines += [f"  {r['size']:6s} full term:   {full} | as run {as_run['total'] / 1e9:8.2f}",
                  f"  {'':6s} sub-sampled: {_gflop(r, 'sub'):8.2f}{'':{len(full) - 8}s} | as run "
                  f"{_gflop(r, 'sub', 'as_run'):8.2f}",
                  "         full term by part (GFLOP, forward + backward): "
                  + ", ".join(f"{name} {value / 1e9:.3f}" for name, value in parts.items()),
                  f"         operators counted as run: {', '.join(as_run['ops'])}; "
                  f"oneDNN off: {', '.join(native['ops'])}",
                  f"         LSTM operators that ran: {', '.join(r['lstm_ops']) or 'none'}"]
    lines += ["", "timings: median / min / mean s per step (steps timed, cores used by other processes meanwhile); "
              "memory (ru_maxrss MiB):"]
    for r in results:
        timing = "; ".join(f"{k} {v['median_s']:.3f}/{v['min_s']:.3f}/{v['mean_s']:.3f} ({v['steps']}, "
                           f"others {v['other_cores']:.2f} cores)" for k, v in r["runs"].items())
        memory = ", ".join(f"{k[10:-4]} {v:.0f}" for k, v in r.items() if k.startswith("rss_after_"))
        lines += [f"  {r['size']:6s} {timing}",
                  f"         RSS built {r['rss_built_mib']:.0f}, high-water after {memory}; "
                  f"peak {r['rss_peak_mib']:.0f}",
                  f"         load average: start {r['load_start']}, end {r['load_end']}"]
    for r in results:
        lines += [f"\n{r['size']} {key}:\n{r[key]}" for key in ("profile_full_fp32", "profile_full_bf16") if key in r]
    return "\n".join(lines)
