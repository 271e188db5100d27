"""reports/build.py: figures + report.md from saved tables, without torch or Lightning."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
for path in (REPO, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from test_aggregate import make_grid_folder  # noqa: E402  (hand-made grid folder)

from ablations.aggregate import aggregate  # noqa: E402


def _load_build():
    spec = importlib.util.spec_from_file_location("reports_build_under_test", REPO / "reports" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A hand-made grid, aggregated, then its report built once in a fresh interpreter."""
    root = tmp_path_factory.mktemp("report")
    grid_dir = make_grid_folder(root)
    aggregate(grid_dir)
    for run in (grid_dir / "runs").iterdir():  # the report must need only the tables (+ samples)
        (run / "metrics.csv").unlink(missing_ok=True)
    probe = ("import runpy, sys; sys.argv = ['reports/build.py', '--grid', 'toy', '--out', sys.argv[1]]\n"
             "try:\n    runpy.run_path('reports/build.py', run_name='__main__')\n"
             "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'lightning', "
             "'pytorch_lightning', 'rmvae'} and m != 'rmvae' and not m.startswith('rmvae.config'))\n"
             "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", probe, str(root)], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    return grid_dir, result.stdout


def test_report_does_not_import_torch_or_lightning(built):
    _, stdout = built
    assert "HEAVY []" in stdout


def test_report_creates_figures_samples_and_markdown(built):
    grid_dir, _ = built
    for name in ("curve_loss", "curve_accuracy", "final_metrics", "music_stats"):
        path = grid_dir / "figures" / f"{name}.png"
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG", name
    for arm in ("ref", "new"):
        assert (grid_dir / "samples" / f"{arm}.mid").exists() and (grid_dir / "samples" / f"{arm}.png").exists()
    report = (grid_dir / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    for figure in (grid_dir / "figures").glob("*.png"):
        assert f"figures/{figure.name}" in links
    for link in links:
        assert (grid_dir / link).exists(), link  # every link resolves


def test_report_states_verdicts_uncertainty_failures_and_wandb(built):
    grid_dir, _ = built
    report = (grid_dir / "report.md").read_text()
    assert "t = 4.30" in report and "2 degrees of freedom" in report and "--seeds" in report
    assert "bootstrap" in report
    lines = {line.split("|")[1].strip(): line for line in report.splitlines()
             if line.startswith(("| test/", "| greedy/")) and "`new`" in line}  # the comparison table
    assert "**new** better; interval excludes 0" in lines["test/recon_nll"]
    assert "new by the mean only; interval includes 0" in lines["test/acc"]
    assert "closer to Bach" in lines["greedy/repeat_rate"]
    assert "RuntimeError: loss is NaN at step 7" in report and "new3" in report
    assert "wandb-ref0" in report and "wandb-new2" in report
    assert "| greedy/repeat_rate | 0.02 |" in report  # Bach column of the musical statistics


def test_report_on_a_grid_without_finished_runs(tmp_path):
    grid_dir = make_grid_folder(tmp_path, final={}, failed=(("ref", 0, "ValueError: boom"),))
    report = _load_build().build(grid_dir).read_text()
    assert "No figures yet" in report and "ValueError: boom" in report


def test_build_command_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "reports/build.py", "--grid", "nope", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "no grid" in result.stderr and "Traceback" not in result.stderr
