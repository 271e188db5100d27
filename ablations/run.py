"""Run an ablation grid (docs/design.md §7): every arm × seed, resumable, then tables and a report.

Usage (from the repository root; ``python -m ablations.run`` works anywhere)::

    python ablations/run.py --grid harmony                       # quick profile, 3 seeds
    python ablations/run.py --grid all --profile full --launcher slurm --devices 4
    python ablations/run.py --grid size --dry-run                # list the runs, train nothing

The command line only: :mod:`ablations.runner` plans, runs and aggregates, and this module hands
it the report builder (:func:`reports.build.build`, imported when a report is due). It is the one
place where ``ablations`` uses ``reports``; ``reports`` imports ``ablations``, never this module.
Run as a script it imports the installed packages (``pip install -e .``), so that the runs pickle
as ``ablations.runner.run_one`` in the process pool and submitit workers.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ablations import runner


def build_report(grid_dir: Path) -> Path:
    """Figures, samples and ``report.md`` of a grid folder (matplotlib loaded only now)."""
    from reports.build import build

    return build(grid_dir)


def main(argv: list[str] | None = None, run_fn: Callable | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad input, 1 if a run failed)."""
    return runner.main(argv, run_fn=run_fn, report_fn=build_report)


if __name__ == "__main__":
    sys.exit(main())
