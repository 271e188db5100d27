"""Launchers: every one calls the same ``run_fn(config, run_dir, meta)`` for each run.

- ``local``: one run after the other in this process.
- ``local-parallel``: a bounded pool of ``--jobs`` spawned processes, each limited to
  cores/jobs torch threads so the pool does not oversubscribe the CPU.
- ``slurm``: one submitit job per run (a job array). The job is :class:`SubmititRun`, a
  ``Checkpointable``: on timeout or preemption submitit requeues it, and the new job
  resumes from the run's ``checkpoints/last.ckpt``. ``cluster="local"``/``"debug"`` run the
  same jobs as local processes or in-process, which is how the tests exercise it.

Each launcher returns one outcome dict per run (``run_id``, ``status``, ``reason``, …).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ablations import runfolder
from ablations.grids import RunSpec
from rmvae.config import Config


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def launch(name: str, specs: Sequence[RunSpec], grid_dir: Path, run_fn: Callable, jobs: int = 2,
           threads: int | None = None, slurm: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run ``specs`` with the launcher called ``name``; returns one outcome per run.

    Args:
        threads: torch/OpenMP threads per run; default all cores for ``local``, cores/jobs for
            ``local-parallel``, the job's CPUs for ``slurm``. Tiny models gain little from
            threads, and threads that outnumber the free cores spin and slow a run down many
            times (measured: 2 threads on a busy 2-core machine, 4.5× slower than 1).
    """
    if not specs:
        return []
    if name == "local":
        if threads:
            limit_threads(threads)
        return launch_local(specs, grid_dir, run_fn)
    if name == "local-parallel":
        return launch_local_parallel(specs, grid_dir, run_fn, jobs, threads)
    if name == "slurm":
        return launch_slurm(specs, grid_dir, run_fn, **(slurm or {}))
    raise ValueError(f"unknown launcher {name!r}")


def _progress(index: int, total: int, spec: RunSpec, outcome: dict[str, Any]) -> None:
    extra = f": {outcome['reason']}" if outcome.get("reason") else ""
    print(f"[{index}/{total}] {spec.arm}/seed{spec.seed} ({spec.run_id}) {outcome['status']} "
          f"in {outcome.get('seconds', 0):.1f} s{extra}", flush=True)


def launch_local(specs: Sequence[RunSpec], grid_dir: Path, run_fn: Callable) -> list[dict[str, Any]]:
    """Run every spec in turn in this process."""
    outcomes = []
    for index, spec in enumerate(specs, 1):
        outcome = run_fn(spec.config, spec.run_dir(grid_dir), spec.meta())
        _progress(index, len(specs), spec, outcome)
        outcomes.append(outcome)
    return outcomes


def limit_threads(threads: int) -> None:
    """Pool initializer: cap BLAS/OpenMP and torch threads of this worker process."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:  # otherwise torch reads OMP_NUM_THREADS when it is imported
        sys.modules["torch"].set_num_threads(threads)


def _lost(spec: RunSpec, reason: str) -> dict[str, Any]:
    """Outcome of a run whose worker died: no FAILED file, so the next call resumes it."""
    return dict(run_id=spec.run_id, status="failed", reason=reason, wandb_run_id=None, seconds=0.0)


def launch_local_parallel(specs: Sequence[RunSpec], grid_dir: Path, run_fn: Callable,
                          jobs: int = 2, threads: int | None = None) -> list[dict[str, Any]]:
    """Run the specs in a pool of ``jobs`` spawned processes, cores/jobs threads each."""
    threads = threads or max(1, cpu_count() // jobs)
    jobs = max(1, min(jobs, len(specs)))
    context = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    outcomes = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                                initializer=limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(run_fn, spec.config, spec.run_dir(grid_dir), spec.meta()): spec for spec in specs}
        for index, future in enumerate(concurrent.futures.as_completed(futures), 1):
            spec = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker process died (killed, out of memory)
                outcome = _lost(spec, f"worker process lost: {type(error).__name__}: {error}")
            _progress(index, len(specs), spec, outcome)
            outcomes.append(outcome)
    return outcomes


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit is only needed by the slurm launcher
    _Checkpointable = object


class SubmititRun(_Checkpointable):
    """A submitit job running one ablation run; requeued with the same arguments on timeout.

    The state worth keeping lives on disk (``checkpoints/last.ckpt``), so ``checkpoint``
    resubmits this callable unchanged and the requeued job resumes from that file.
    """

    def __init__(self, run_fn: Callable):
        self.run_fn = run_fn

    def __call__(self, config: dict[str, Any], run_dir: str, meta: dict[str, Any]) -> dict[str, Any]:
        import submitit

        rank = submitit.JobEnvironment().global_rank  # > 0 only for DDP peers in one job
        return self.run_fn(Config.from_dict(config), Path(run_dir), meta, rank=rank)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on timeout/preemption: requeue the same run (resumes from last.ckpt)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


@dataclass(frozen=True)
class SlurmDefaults:
    """What a slurm job asks for unless told otherwise: the one statement of these defaults, which
    :func:`make_executor` and the ``--slurm-*`` options of ``ablations/run.py`` both read."""

    partition: str | None = None  # the cluster's default partition
    time_min: int = 240  # minutes per job; a run that needs longer is requeued and resumes
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 16  # jobs of the array running at once
    max_requeue: int = 3  # requeues after timeout/preemption


SLURM = SlurmDefaults()
SLURM_CLUSTERS = ("slurm", "local", "debug")  # submitit's clusters; local and debug run on this machine


def make_executor(folder: Path, cluster: str | None = None, partition: str | None = SLURM.partition,
                  time_min: int = SLURM.time_min, cpus_per_task: int = SLURM.cpus_per_task,
                  mem_gb: int = SLURM.mem_gb, array_parallelism: int = SLURM.array_parallelism,
                  max_requeue: int = SLURM.max_requeue, devices: int = 1):
    """A submitit executor for ablation runs (``cluster`` None picks SLURM when available)."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=cluster,
                                     slurm_max_num_timeout=max_requeue)
    parameters: dict[str, Any] = dict(name="rmvae-ablation", timeout_min=time_min, cpus_per_task=cpus_per_task,
                                      mem_gb=mem_gb, nodes=1, tasks_per_node=1, slurm_array_parallelism=array_parallelism)
    if executor.cluster == "slurm":
        # Lightning's SLURM environment wants one task per GPU; run_one makes rank 0 the writer.
        parameters.update(tasks_per_node=devices, gpus_per_node=devices)
        if partition:
            parameters["slurm_partition"] = partition
    executor.update_parameters(**parameters)
    return executor


def launch_slurm(specs: Sequence[RunSpec], grid_dir: Path, run_fn: Callable, cluster: str | None = None,
                 **executor_options: Any) -> list[dict[str, Any]]:
    """Submit one job per spec (an array), wait for them, return the rank-0 outcomes."""
    # Jobs import run_fn's module by name: `ablations` is installed with the project (pip install -e .).
    executor = make_executor(Path(grid_dir) / "submitit", cluster=cluster, **executor_options)
    job_fn = SubmititRun(run_fn)
    with executor.batch():
        submitted = [(spec, executor.submit(job_fn, spec.config.to_dict(), str(spec.run_dir(grid_dir)), spec.meta()))
                     for spec in specs]
    print(f"submitted {len(submitted)} jobs ({executor.cluster}); logs in {Path(grid_dir) / 'submitit'}", flush=True)
    outcomes = []
    for index, (spec, job) in enumerate(submitted, 1):
        try:
            outcome = job.results()[0]
        except Exception as error:  # the job itself failed (cancelled, out of requeues, node failure)
            reason = f"submitit job {job.job_id} failed: {type(error).__name__}: {str(error).strip()[-500:]}"
            run_dir = spec.run_dir(grid_dir)
            if not runfolder.is_done(run_dir):
                runfolder.mark_failed(run_dir, reason)
            outcome = dict(run_id=spec.run_id, status="failed", reason=reason, wandb_run_id=None, seconds=0.0)
        _progress(index, len(submitted), spec, outcome)
        outcomes.append(outcome)
    return outcomes
