"""Band player latency: the work of one bar line (push the finished measure + predict the next but one).

    python benchmarks/band_latency.py [--sizes small medium big] [--decoders factorised autoregressive]
                                      [--predictions 60] [--threads 2]

Untrained models (latency does not depend on the weights) with the band's shapes: mono encoding,
P = 54 pitches, 4 voices, a window of 8 measures, z_dim 32, the player on voice 0 and the band on
voices 1–3. For every size it times the cached path (:class:`rmvae.band.CachedPredictor`: encode
only the new measure, keep the window's experts) and the naive path
(:class:`rmvae.band.NaivePredictor`: re-encode the whole window), alternating the two per bar line
so that a load from other processes hits both alike, under ``torch.inference_mode`` on the CPU.
The band's part of a measure is encoded ahead (during the measure before its bar line), as
the engine does; the ``work`` column adds that time back. A measure writer (the autoregressive
decoder) writes the predicted measure token by token: 16 steps × 4 voices in sequence. Goals (p95,
cached): factorised < 10 ms small and medium, < 50 ms big; autoregressive < 50 ms small and
medium (the band predicts the measure after next, so it has a whole measure of time; 50 ms leaves
most of a measure at any tempo). The load average is printed with the table, because other
processes on the same cores change the numbers.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from rmvae.band import CachedPredictor, NaivePredictor
from rmvae.config import STEPS_PER_MEASURE, ModelConfig
from rmvae.model.rmvae import RMVAE

N_PITCHES, N_VOICES, N_MEASURES, Z_DIM = 54, 4, 8, 32
BAND_VOICES = (1, 2, 3)
GOALS_MS = {"factorised": {"small": 10.0, "medium": 10.0, "big": 50.0},
            "autoregressive": {"small": 50.0, "medium": 50.0}}


def random_measures(n: int, seed: int = 0) -> list[np.ndarray]:
    """Plausible measures ``(V, S)``: an onset every 1–4 steps, holds in between."""
    rng = np.random.default_rng(seed)
    measures = []
    for _ in range(n):
        tokens = np.full((N_VOICES, STEPS_PER_MEASURE), N_PITCHES + 1, dtype=np.int64)  # holds
        for voice in range(N_VOICES):
            step = 0
            while step < STEPS_PER_MEASURE:
                tokens[voice, step] = rng.integers(0, N_PITCHES)
                step += int(rng.integers(1, 5))
        measures.append(tokens)
    return measures


def time_bar_line(predictor, tokens: np.ndarray, mask: np.ndarray, timer=time.perf_counter) -> tuple[float, float]:
    """(latency, work) in seconds: push + predict, and that plus encoding the band's part ahead.

    As in the engine, the band's part of a measure is encoded during the measure before it is
    pushed (``encode_ahead``, a no-op for the naive path), which is off the bar line's critical path.
    """
    started = timer()
    predictor.encode_ahead(tokens, BAND_VOICES)
    bar_line = timer()
    predictor.push(tokens, mask)
    predictor.predict()
    done = timer()
    return done - bar_line, done - started


def stats(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "max": float(ms.max())}


def benchmark(size: str, n_predictions: int, warmup: int = 10, timer=time.perf_counter,
              decoder: str = "factorised") -> dict:
    torch.manual_seed(0)
    config = ModelConfig(size=size, z_dim=Z_DIM, measure_decoder=decoder, writer_context="measure")  # the band's
    model = RMVAE(config, N_VOICES, N_PITCHES, "mono").eval()
    predictors = {"cached": CachedPredictor(model, N_MEASURES, BAND_VOICES),
                  "naive": NaivePredictor(model, N_MEASURES, BAND_VOICES)}
    measures = random_measures(N_MEASURES + warmup + n_predictions)
    mask = np.ones(N_VOICES, dtype=bool)
    latency = {name: [] for name in predictors}
    work = {name: [] for name in predictors}
    for i, tokens in enumerate(measures):
        for name, predictor in predictors.items():  # alternate: both paths see the same load
            seconds, total = time_bar_line(predictor, tokens, mask, timer)
            if i >= N_MEASURES + warmup:  # timed only with a full window, after warm-up
                latency[name].append(seconds)
                work[name].append(total)
    return {"size": size, "parameters": model.n_parameters(), "cached": stats(latency["cached"]),
            "cached_work": stats(work["cached"]), "naive": stats(latency["naive"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "medium", "big"], choices=["small", "medium", "big"])
    parser.add_argument("--decoders", nargs="+", default=["factorised", "autoregressive"], choices=list(GOALS_MS))
    parser.add_argument("--predictions", type=int, default=60, help="timed bar lines per path (≥ 50)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: perf_counter (what a bar line waits); cpu: this thread's CPU time, which "
                        "other processes do not inflate (needs --threads 1: the work must run on this thread)")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1")
    timer = time.perf_counter if args.clock == "wall" else time.thread_time
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, torch "
          f"{torch.__version__}, {args.threads} threads, {args.clock} clock; load average before {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"{'decoder':14s} {'size':7s} {'params':>7s} | {'cached p50':>10s} {'p95':>6s} {'max':>6s} | {'work p50':>8s} | "
          f"{'naive p50':>9s} {'p95':>6s} {'max':>6s} | {'naive/cached p50':>16s} {'p95':>5s} | goal (cached p95)")
    with torch.inference_mode():
        for decoder, size in ((d, s) for d in args.decoders for s in args.sizes):
            row = benchmark(size, args.predictions, timer=timer, decoder=decoder)
            cached, naive = row["cached"], row["naive"]
            goal = GOALS_MS[decoder].get(size)
            verdict = "no goal" if goal is None else f"< {goal:.0f} ms " + ("ok" if cached["p95"] < goal else "MISSED")
            print(f"{decoder:14s} {size:7s} {row['parameters'] / 1e6:6.1f}M | {cached['p50']:10.2f} {cached['p95']:6.2f} "
                  f"{cached['max']:6.2f} | {row['cached_work']['p50']:8.2f} | {naive['p50']:9.2f} {naive['p95']:6.2f} "
                  f"{naive['max']:6.2f} | {naive['p50'] / cached['p50']:15.1f}× {naive['p95'] / cached['p95']:4.1f}× | "
                  f"{verdict}", flush=True)
    load_after = os.getloadavg()
    print(f"ms per bar line: cached/naive = push + predict (the latency a bar line waits for); work = cached "
          f"latency + encoding the band's part ahead; {args.predictions} bar lines each; load average after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
