"""The ablation suite (docs/design.md §7): grids as data, one ``run_one`` per run, tables, report.

Modules:
    grids      grid → arm → dotted config overrides, the baseline, profiles, run ids.
    runfolder  the layout of a grid folder and its run folders: file names, status, JSON reads.
    runner     plan, skip/resume, launch and aggregate a grid (``run_one``, ``main``).
    run        the command line, ``python ablations/run.py --grid NAME`` (or ``python -m ablations.run``).
    launchers  local (sequential), local-parallel (process pool), slurm (submitit).
    aggregate  tidy tables and Student-t statistics from the run folders (no torch).

Imports run one way: ``rmvae`` ← ``ablations`` ← ``reports``. The report of a grid is built by
``reports.build``, which reads what this package writes; the one place that calls it is the
command line, :mod:`ablations.run`, which hands it to :func:`ablations.runner.main`. No other
module here imports ``reports``. Apart from the trainer the runner loads for a real run (and the
W&B mode it asks ``rmvae.train`` for), this package stays importable without torch or Lightning.
"""
