"""Run an ablation grid (docs/design.md §7): every arm × seed, resumable, then tables and a report.

The command line is ``ablations/run.py`` (:mod:`ablations.run`), which calls :func:`main` here.
Each run lives in ``OUT/<grid>/runs/<run_id>/`` (:mod:`ablations.runfolder`): a run with ``DONE``
is skipped; one without resumes from ``checkpoints/last.ckpt``; one that raised has a ``FAILED``
file with the reason and is skipped until ``--retry-failed``.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ablations import launchers, runfolder
from ablations.grids import (DEFAULT_SEEDS, GRID_CHOICES, PROFILES, GridPlan, RunSpec,
                             check_grid_folder, expand_grid)
from ablations.launchers import SLURM, SLURM_CLUSTERS
from ablations.runfolder import run_status
from rmvae.config import Config, ConfigError
from rmvae.files import atomic_write_json
from rmvae.profiles import profiles_help

PROG = "ablations/run.py"
LAUNCHER_CHOICES = ("auto", "local", "local-parallel", "slurm")
CPU_PROFILES = ("quick", "cpu")  # budgets meant for a CPU: `auto` runs --jobs of their runs at once


def resolve_launcher(launcher: str, profile: str, devices: int) -> str:
    """``auto``: ``local-parallel`` for the CPU profiles (two small runs on two cores finish the quick
    harmony grid in about 6 instead of 12 minutes), ``local`` otherwise (one run uses the whole GPU
    or, with ``devices > 1``, DDP)."""
    if launcher != "auto":
        return launcher
    return "local-parallel" if profile in CPU_PROFILES and devices == 1 else "local"


def run_one(config: Config, run_dir: Path, meta: dict[str, Any] | None = None, *,
            train_fn: Callable | None = None, evaluate_fn: Callable | None = None,
            rank: int = 0) -> dict[str, Any]:
    """Train, evaluate and mark one run; never raises for a failing run.

    Skips a run that has ``DONE``. Training resumes from ``checkpoints/last.ckpt`` (the
    trainer does that); a run whose training finished but whose evaluation did not is only
    evaluated again. An exception is written to ``FAILED`` and returned as ``failed``.

    Args:
        config: the resolved config of the run.
        run_dir: the run's folder.
        meta: arm, seed, grid, run id: written to ``run.json`` beside the config.
        train_fn: ``rmvae.train.train`` unless given (tests inject a fake).
        evaluate_fn: ``rmvae.evaluation.evaluate_checkpoint`` unless given.
        rank: global rank when several processes share one run (DDP under SLURM): ranks
            other than 0 only take part in training.

    Returns:
        ``{"run_id", "status": done|skipped|failed, "reason", "wandb_run_id", "seconds"}``.
    """
    run_dir = Path(run_dir)
    run_id = (meta or {}).get("run_id", run_dir.name)
    outcome = dict(run_id=run_id, status="skipped", reason="", wandb_run_id=None, seconds=0.0)
    if runfolder.is_done(run_dir):
        outcome["wandb_run_id"] = runfolder.read_json(run_dir / runfolder.RESULT).get("wandb_run_id")
        return outcome
    start = time.perf_counter()
    try:
        if train_fn is None:
            from rmvae.train import train as train_fn
        if rank != 0:  # a DDP peer: the trainer coordinates, rank 0 writes everything else
            _train_quietly(train_fn, config, run_dir)
            return outcome
        if evaluate_fn is None:
            from rmvae.evaluation import evaluate_checkpoint as evaluate_fn
        runfolder.clear_failed(run_dir)
        runfolder.write_run_files(run_dir, config.to_json(), meta)
        trained = _trained(config, run_dir, train_fn)
        _evaluate(config, run_dir, trained, evaluate_fn)
        runfolder.mark_done(run_dir)
        outcome.update(status="done", wandb_run_id=trained.get("wandb_run_id"))
    except Exception as error:  # a failing run is recorded and the grid goes on
        reason = f"{type(error).__name__}: {error}".strip()
        if rank == 0:
            runfolder.mark_failed(run_dir, reason, traceback.format_exc())
        outcome.update(status="failed", reason=reason)
    outcome["seconds"] = time.perf_counter() - start
    return outcome


def _train_quietly(train_fn: Callable, config: Config, run_dir: Path) -> dict[str, Any]:
    """``train_fn`` without its progress bar where it has one (a grid's log is one line a run)."""
    quiet = {"progress_bar": False} if "progress_bar" in inspect.signature(train_fn).parameters else {}
    return train_fn(config, run_dir, **quiet)


def _trained(config: Config, run_dir: Path, train_fn: Callable) -> dict[str, Any]:
    """The run's training result: the one on disk when its best checkpoint exists (only the
    evaluation was left to do), else that of training now, written to disk with its duration."""
    trained = runfolder.read_json(run_dir / runfolder.TRAIN_RESULT)
    if not trained or not Path(trained.get("best_checkpoint", "")).exists():
        t0 = time.perf_counter()
        trained = dict(_train_quietly(train_fn, config, run_dir))
        trained["train_seconds"] = time.perf_counter() - t0
        atomic_write_json(run_dir / runfolder.TRAIN_RESULT, trained)
    return trained


def _evaluate(config: Config, run_dir: Path, trained: dict[str, Any], evaluate_fn: Callable) -> None:
    """Evaluate the best checkpoint on the test split; write its metrics and the run's result."""
    t0 = time.perf_counter()
    metrics = evaluate_fn(trained["best_checkpoint"], split="test", seed=config.train.seed,
                          sample_path=run_dir / f"{runfolder.SAMPLE}.mid")
    eval_seconds = time.perf_counter() - t0
    atomic_write_json(run_dir / runfolder.TEST_METRICS, {k: float(v) for k, v in metrics.items()})
    atomic_write_json(run_dir / runfolder.RESULT, {**trained, "eval_seconds": eval_seconds})


def configure_wandb_mode(enabled: bool) -> None:
    """W&B runs offline unless the user chose a mode (WANDB_MODE) or is logged in: the decision of
    :func:`rmvae.train.wandb_mode`, set in the environment so that every worker process and submitit
    job inherits it. Nothing is set (nor torch imported) when W&B is off."""
    if not enabled:
        return
    from rmvae.train import wandb_mode

    if wandb_mode() == "offline":
        os.environ["WANDB_MODE"] = "offline"


def prepare_data(specs: list[RunSpec]) -> float:
    """Build each needed corpus cache once, before launching, so parallel runs do not race.

    Returns:
        Seconds spent (near zero when the caches exist).
    """
    start = time.perf_counter()
    from rmvae.data.corpus import load_corpus

    seen = set()
    for spec in specs:
        key = json.dumps(spec.config.data.parse_key(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            load_corpus(spec.config.data)
    return time.perf_counter() - start


def prepare_runs(plan: GridPlan, grid_dir: Path) -> None:
    """Write ``grid.json`` and each run's ``run.json`` + ``config.json`` before launching."""
    atomic_write_json(grid_dir / runfolder.GRID_JSON, plan.definition())
    for spec in plan.runs:
        run_dir = spec.run_dir(grid_dir)
        if not runfolder.is_done(run_dir):
            runfolder.write_run_files(run_dir, spec.config.to_json(), spec.meta())


def format_plan(plan: GridPlan, grid_dir: Path) -> str:
    """The table ``--dry-run`` prints: id, arm, seed, status, overrides of every run."""
    lines = [f"grid {plan.grid} ({len(plan.arms)} arms × {len(plan.seeds)} seeds = {len(plan.runs)} runs), "
             f"profile {plan.profile}, reference arm {plan.reference}, folder {grid_dir}",
             "shared overrides: " + ", ".join(f"{k}={v}" for k, v in plan.base_overrides.items()),
             f"{'run_id':<12}{'arm':<18}{'seed':<6}{'status':<13}overrides"]
    for spec in plan.runs:
        overrides = ", ".join(f"{k}={v}" for k, v in spec.overrides.items())
        lines.append(f"{spec.run_id:<12}{spec.arm:<18}{spec.seed:<6}"
                     f"{run_status(spec.run_dir(grid_dir)):<13}{overrides}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, choices=GRID_CHOICES, help="which comparison to run")
    parser.add_argument("--profile", default="quick", choices=tuple(PROFILES),
                        help=f"budget: {profiles_help()}; default quick")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"training seeds per arm, 0..N-1 (default {DEFAULT_SEEDS})")
    parser.add_argument("--launcher", default="auto", choices=LAUNCHER_CHOICES,
                        help="local: one run after the other; local-parallel: --jobs processes (fastest for the "
                             "quick profile on CPU); slurm: one submitit job per run, requeued on timeout; "
                             "auto (default): local-parallel for the quick and cpu profiles, else local")
    parser.add_argument("--jobs", type=int, default=2, help="processes of local-parallel (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: all cores for local, cores/jobs for local-parallel)")
    parser.add_argument("--devices", type=int, default=1, help="train.devices of every run (DDP when > 1)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output root (default reports/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override for every arm, e.g. --set train.max_steps=50")
    parser.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    parser.add_argument("--arms", nargs="+", metavar="ARM",
                        help="train only these arms now (the others keep what they have; the report shows every "
                             "finished run), e.g. to add seeds to one costly arm later")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and train nothing")
    parser.add_argument("--retry-failed", action="store_true", help="run again the runs that have FAILED")
    parser.add_argument("--no-report", action="store_true", help="write the tables but not the figures and report.md")
    slurm = parser.add_argument_group("slurm launcher (submitit)")
    slurm.add_argument("--slurm-partition", default=SLURM.partition)
    slurm.add_argument("--slurm-time", type=int, default=SLURM.time_min,
                       help=f"minutes per job (default {SLURM.time_min})")
    slurm.add_argument("--slurm-cpus-per-task", type=int, default=SLURM.cpus_per_task)
    slurm.add_argument("--slurm-mem-gb", type=int, default=SLURM.mem_gb)
    slurm.add_argument("--slurm-array-parallelism", type=int, default=SLURM.array_parallelism)
    slurm.add_argument("--slurm-max-requeue", type=int, default=SLURM.max_requeue,
                       help="requeues after timeout/preemption")
    slurm.add_argument("--slurm-cluster", default=None, choices=SLURM_CLUSTERS,
                       help="submitit cluster; default: SLURM if available, else local processes")
    return parser


def main(argv: list[str] | None = None, run_fn: Callable | None = None,
         report_fn: Callable[[Path], Path] | None = None) -> int:
    """Plan, run and aggregate a grid; returns the exit code (2 for bad input, 1 if a run failed).

    Args:
        argv: the command line (default ``sys.argv[1:]``).
        run_fn: runs one run, :func:`run_one` unless given (tests inject a fake trainer).
        report_fn: builds the figures and ``report.md`` of a grid folder and returns the report's
            path (``reports.build.build``, passed in by :mod:`ablations.run`); without it, or with
            ``--no-report``, only the tables are written.
    """
    args = build_parser().parse_args(argv)
    try:
        plan, grid_dir = _plan(args, injected=run_fn is not None)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(format_plan(plan, grid_dir))
        return 0
    todo = _runs_to_do(plan, grid_dir, args)
    peer_rank = int(os.environ.get("LOCAL_RANK") or 0)
    if peer_rank > 0 and args.devices > 1:
        # Lightning's DDP re-executes this very command for ranks > 0 while rank 0 trains the first
        # unfinished run: join that run's training, write nothing, and stop.
        if todo:
            (run_fn or run_one)(todo[0].config, todo[0].run_dir(grid_dir), todo[0].meta(), rank=peer_rank)
        return 0
    prepare_runs(plan, grid_dir)
    configure_wandb_mode(not args.no_wandb)
    _announce(plan, grid_dir, todo, args)
    start = time.perf_counter()
    if run_fn is None and todo:  # the real trainer: parse the corpus once, here
        print(f"{PROG}: corpus ready in {prepare_data(todo):.1f} s", flush=True)
    outcomes = launchers.launch(args.launcher, todo, grid_dir, run_fn=run_fn or run_one, jobs=args.jobs,
                                threads=args.threads, slurm=_slurm_options(args))
    wall = time.perf_counter() - start
    for outcome in outcomes:
        if outcome["status"] == "failed":
            print(f"{PROG}: run {outcome['run_id']} failed: {outcome['reason']}", file=sys.stderr)
    return _report(plan, grid_dir, outcomes, wall, None if args.no_report else report_fn)


def _plan(args: argparse.Namespace, injected: bool) -> tuple[GridPlan, Path]:
    """The grid's plan and folder, once the options agree with each other and with the folder.

    Resolves ``args.launcher``: an injected run function (tests) runs in this process, so there
    ``auto`` means local.

    Raises:
        ConfigError: options that contradict each other, the grid or an earlier run in its folder.
    """
    args.launcher = ("local" if args.launcher == "auto" else args.launcher) if injected else (
        resolve_launcher(args.launcher, args.profile, args.devices))
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError(f"--jobs and --threads must be at least 1 (got {args.jobs}, {args.threads})")
    if args.devices > 1 and args.launcher == "local-parallel":
        raise ConfigError("--devices > 1 runs DDP inside each run; use --launcher local or slurm with it, "
                          "not local-parallel")
    plan = expand_grid(args.grid, args.profile, args.seeds, args.overrides, devices=args.devices,
                       wandb=not args.no_wandb)
    grid_dir = args.out / args.grid
    check_grid_folder(grid_dir, plan)
    unknown_arms = sorted(set(args.arms or ()) - set(plan.arms))
    if unknown_arms:
        raise ConfigError(f"--arms {', '.join(unknown_arms)}: not an arm of grid {args.grid!r}; "
                          f"its arms: {', '.join(plan.arms)}")
    return plan, grid_dir


def _runs_to_do(plan: GridPlan, grid_dir: Path, args: argparse.Namespace) -> list[RunSpec]:
    """The runs not finished yet (and the failed ones with ``--retry-failed``), of ``--arms`` if given."""
    todo = [spec for spec in plan.runs if run_status(spec.run_dir(grid_dir)) in ("pending", "interrupted")
            or (args.retry_failed and run_status(spec.run_dir(grid_dir)) == "failed")]
    if args.arms:
        todo = [spec for spec in todo if spec.arm in args.arms]
    return todo


def _announce(plan: GridPlan, grid_dir: Path, todo: list[RunSpec], args: argparse.Namespace) -> None:
    """One line before launching: how many runs there are, to run now and already finished."""
    finished = sum(run_status(spec.run_dir(grid_dir)) in ("done", "failed") for spec in plan.runs)
    left_out = ", other arms left for later (--arms)" if args.arms else ""
    print(f"{PROG}: grid {plan.grid}, {len(plan.runs)} runs: {len(todo)} to run, {finished} already done or failed"
          f"{left_out} (folder {grid_dir})", flush=True)


def _report(plan: GridPlan, grid_dir: Path, outcomes: list[dict[str, Any]], wall: float,
            report_fn: Callable[[Path], Path] | None) -> int:
    """Aggregate the grid's tables (and its report, with ``report_fn``), print the totals and
    return the exit code: 1 when a run of the grid has failed, else 0."""
    from ablations.aggregate import aggregate

    tables = aggregate(grid_dir)  # cheap: always keep the tables current
    if report_fn is not None:
        report = report_fn(grid_dir)
        print(f"{PROG}: tables in {grid_dir}, report {report}")
    status = tables["status"]
    failed = int((status["status"] == "failed").sum()) if len(status) else 0
    done = sum(1 for spec in plan.runs if run_status(spec.run_dir(grid_dir)) == "done")
    print(f"{PROG}: {done}/{len(plan.runs)} runs done, {failed} failed, "
          f"{sum(o['status'] == 'done' for o in outcomes)} trained now in {wall:.1f} s")
    return 1 if failed else 0


def _slurm_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(partition=args.slurm_partition, time_min=args.slurm_time, cpus_per_task=args.slurm_cpus_per_task,
                mem_gb=args.slurm_mem_gb, array_parallelism=args.slurm_array_parallelism,
                max_requeue=args.slurm_max_requeue, cluster=args.slurm_cluster, devices=args.devices)
