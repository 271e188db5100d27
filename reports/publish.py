"""A grid's results for the repository: ``docs/results/<grid>/`` from a grid folder.

The report, its tables and figures and one sample per arm are copied; the run folders
(checkpoints, W&B files) and ``runs.csv`` (every logged step of every run, megabytes) stay where
the grid ran, so a published grid costs a few hundred kilobytes. ``python reports/build.py --grid
<grid> --publish docs/results`` writes it again from the run folders.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from rmvae.files import atomic_write_text

PUBLISHED_TABLES = ("final.csv", "summary.csv", "paired.csv", "paired_direct.csv", "paired_autoregressive.csv",
                    "status.csv")
PUBLISHED_FOLDERS = ("figures", "samples")
RUNS_LINK = "[runs.csv](runs.csv) (every run × step × metric)"
RUNS_UNPUBLISHED = "runs.csv (every run × step × metric; in the grid's own folder, not published)"
RUN_FOLDER_LINK = re.compile(r"\[(`[^`]+`)\]\(runs/[^)]*\)")  # the Runs table's links to run folders


def published_report(text: str) -> str:
    """The report with its links to what is not published (run folders, runs.csv) made plain text."""
    return RUN_FOLDER_LINK.sub(r"\1", text.replace(RUNS_LINK, RUNS_UNPUBLISHED))


def publish(grid_dir: Path, root: Path) -> Path:
    """Copy the built report of ``grid_dir`` to ``root/<grid name>/``, replacing what was there;
    returns the folder."""
    grid_dir = Path(grid_dir)
    report = grid_dir / "report.md"
    if not report.exists():
        raise FileNotFoundError(f"{grid_dir} has no report.md; build it first (reports/build.py --grid ...)")
    target = Path(root) / grid_dir.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    atomic_write_text(target / "report.md", published_report(report.read_text()))
    for name in PUBLISHED_TABLES:
        if (grid_dir / name).exists():
            shutil.copyfile(grid_dir / name, target / name)
    for folder in PUBLISHED_FOLDERS:
        if (grid_dir / folder).is_dir():
            shutil.copytree(grid_dir / folder, target / folder)
    return target
