"""How far does a run killed N times at random moments, and resumed each time, land from the same run never interrupted?

    python benchmarks/resume_spread.py [--kills 3] [--seed 0] [--accelerator cpu|gpu] [--steps 68] [--deterministic]

Runs one `quick`-profile run as a grid runs it (training, then its test evaluation:
``ablations.runner.run_one``) straight, then the same run in processes that SIGKILL themselves
at ``--kills`` moments drawn (seeded) from the uninterrupted run's trace (``kill_points``: a
training step, a validation or test batch, or inside the atomic write of ``last.ckpt``,
``metrics.csv``, ``test_metrics.json``, …), each attempt resuming where the last one died, and
a last attempt that finishes it. Prints the largest difference of every logged metric
(``metrics.csv``), of every test metric (``test_metrics.json``) and of the final weights. On
CPU every difference is 0 (docs/design.md §3.8; docs/experiments.md, "Exact resume"); on a GPU the difference is the spread of
its non-deterministic kernels, which ``--deterministic`` (``train.deterministic``) should
remove at some cost in speed. Results go to
``benchmarks/results/resume_spread_<accelerator>_<N>kills.txt``.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from common import publish  # benchmarks/ is the script's folder
from kill_points import Moments, selectable

REPO = Path(__file__).resolve().parent.parent


def worker(config_file: str, run_dir: str, kill_at: str | None, trace: Path | None, cache_dir: Path) -> int:
    """Train and evaluate the run (``run_one``); with ``kill_at``, die by SIGKILL at that moment
    (also the process ``tests/test_resume.py`` kills). Returns 0 when the run is done, 1 when it failed."""
    from ablations.runner import run_one
    from rmvae.config import Config
    from rmvae.evaluation import evaluate_checkpoint
    from rmvae.train import train

    moments = Moments(run_dir, kill_at, trace)
    moments.install()

    def train_fn(config, out_dir, progress_bar=False):
        result = train(config, out_dir, progress_bar=progress_bar, cache_dir=cache_dir)
        moments.phase("trained")
        return result

    def evaluate_fn(checkpoint, **options):
        moments.phase("eval")
        return evaluate_checkpoint(checkpoint, cache_dir=cache_dir, **options)

    config = Config.from_stored(json.loads(Path(config_file).read_text()))
    outcome = run_one(config, Path(run_dir), train_fn=train_fn, evaluate_fn=evaluate_fn)
    if outcome["status"] == "failed":
        print(outcome["reason"], file=sys.stderr)
        return 1
    return 0


def run_worker(config_file: Path, run_dir: Path, cache_dir: Path, kill_at: str | None = None,
               trace: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """One worker process (returncode ``-SIGKILL`` when it died at ``kill_at``)."""
    command = [sys.executable, __file__, "--worker", str(config_file), str(run_dir), "--cache-dir", str(cache_dir)]
    command += ["--kill-at", kill_at] if kill_at is not None else []
    command += ["--trace", str(trace)] if trace is not None else []
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)


def kill_and_resume(config_file: Path, run_dir: Path, cache_dir: Path, moments: list[str],
                    env: dict | None = None) -> None:
    """Kill one attempt at each moment in turn, then run one more to the end; raise if any
    attempt did not die where it should or the last did not finish."""
    for moment in moments:
        result = run_worker(config_file, run_dir, cache_dir, kill_at=moment, env=env)
        if result.returncode != -signal.SIGKILL:
            raise RuntimeError(f"the attempt to kill at {moment!r} ended with {result.returncode}: "
                               f"{result.stderr[-2000:]}")
    result = run_worker(config_file, run_dir, cache_dir, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"the resumed run failed: {result.stderr[-2000:]}")


def pick_moments(trace: Path, kills: int, seed: int) -> list[str]:
    """``kills`` distinct moments of an uninterrupted run's trace, drawn with ``seed``, in run order."""
    import numpy as np

    moments = selectable(trace.read_text().splitlines())
    chosen = np.random.default_rng(seed).choice(len(moments), size=min(kills, len(moments)), replace=False)
    return [moments[i] for i in sorted(chosen)]


def differences(straight: Path, resumed: Path) -> dict:
    """Largest |difference| of the two run folders' metrics.csv columns, test metrics and final weights."""
    import pandas as pd
    import torch

    a, b = pd.read_csv(straight / "metrics.csv"), pd.read_csv(resumed / "metrics.csv")
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        raise SystemExit(f"metrics.csv differ in shape: {a.shape} vs {b.shape}")
    numeric = a.select_dtypes("number").columns
    gaps = (a[numeric] - b[numeric]).abs().max().fillna(0.0)
    gaps[a[numeric].isna().ne(b[numeric].isna()).any()] = math.inf  # a value logged in one run only
    tests = [json.loads((folder / "test_metrics.json").read_text()) for folder in (straight, resumed)]
    test_gaps = {key: _gap(value, tests[1].get(key)) for key, value in tests[0].items()}
    weights = [torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
               for folder in (straight, resumed)]
    weight_gap = max(float((weights[0][k].float() - weights[1][k].float()).abs().max()) for k in weights[0])
    return {"rows": len(a), "metrics": gaps, "tests": pd.Series(test_gaps, dtype=float), "weights": weight_gap}


def _gap(x: float, y: float | None) -> float:
    """|x - y|, 0 for two NaNs, infinite for a value missing on one side."""
    if y is None or math.isnan(x) != math.isnan(y):
        return math.inf
    return 0.0 if x == y or math.isnan(x) else abs(x - y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1, help="SIGKILLs at seeded random moments (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moments drawn")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--steps", type=int, default=68, help="default: 4 epochs, validation after the 2nd and 4th")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache", help="corpus cache")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--kill-at", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker, args.kill_at, args.trace, args.cache_dir)

    from rmvae.config import Config, apply_overrides
    from rmvae.profiles import profile_overrides

    overrides = {**profile_overrides("quick"), "train.max_steps": args.steps, "train.wandb": False,
                 "train.accelerator": args.accelerator, "train.deterministic": args.deterministic}
    config = apply_overrides(Config(), overrides)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config_file = scratch / "config.json"
        config_file.write_text(config.to_json())
        straight = run_worker(config_file, scratch / "straight", args.cache_dir, trace=scratch / "trace")
        if straight.returncode != 0:
            raise SystemExit(f"the uninterrupted run failed: {straight.stderr[-2000:]}")
        moments = pick_moments(scratch / "trace", args.kills, args.seed)
        kill_and_resume(config_file, scratch / "killed", args.cache_dir, moments)
        gaps = differences(scratch / "straight", scratch / "killed")
    lines = [f"resume spread, {args.accelerator}{' (deterministic)' if args.deterministic else ''}: quick profile, "
             f"{args.steps} steps and the test evaluation, SIGKILLed {len(moments)}× (seed {args.seed}) at: "
             f"{'; '.join(moments)}; resumed each time",
             *(f"{name} ({len(values)} values): largest |difference| {float(values.max()) if len(values) else 0:.3g}; "
               f"values that differ: {int((values > 0).sum())}"
               + "".join(f"\n  {key}: {value:.3g}" for key, value in values.sort_values().tail(5).items() if value > 0)
               for name, values in (("metrics.csv columns", gaps["metrics"]), ("test metrics", gaps["tests"]))),
             f"metrics.csv rows: {gaps['rows']} in both",
             f"final weights: largest |difference| {gaps['weights']:.3g}",
             "(this measures reproducibility, not quality)"]
    publish(lines, REPO / "benchmarks" / "results" / f"resume_spread_{args.accelerator}_{args.kills}kills.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
