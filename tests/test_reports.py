"""reports/build.py: figures + report.md from saved tables, without torch or Lightning."""
from __future__ import annotations

import importlib.util
import math
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

from test_aggregate import T_2DF, make_grid_folder  # noqa: E402  (hand-made grid folder)

from ablations.aggregate import aggregate  # noqa: E402
from ablations.grids import DIRECT_ARM  # noqa: E402


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
             "'pytorch_lightning', 'rmvae'} and m != 'rmvae' and not m.startswith(('rmvae.config', 'rmvae.intervals')))\n"
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
    for name in ("curve_loss", "curve_accuracy", "final_metrics", "music_stats", "nll_vs_unigram", "collapse"):
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


def _learn_section(report: str) -> str:
    return report.split("## Does the model learn?", 1)[1].split("\n## ", 1)[0]


def test_report_opens_with_does_the_model_learn(built):
    grid_dir, _ = built
    report = (grid_dir / "report.md").read_text()
    assert report.splitlines()[0].startswith("# Ablation")
    assert re.findall(r"^## .*", report, flags=re.M)[0] == "## Does the model learn?"
    section = _learn_section(report)
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"`ref`", "`new`", f"`{DIRECT_ARM}`", "positional unigram"}
    # the unigram row: test NLL 5, acc 0.3, onset acc 0.2 (the same in every run), no gains of its own
    assert rows["positional unigram"] == "| positional unigram | 5 | 0.3 | 0.2 | — | — |"
    half = T_2DF / math.sqrt(3)  # sd 1 and 0.5 below, 3 seeds
    # new: NLL 8, 8.5, 9 → mean 8.5, sd 0.5; gain vs unigram −3, −3.5, −4;
    # new − direct = 1, 2, 3 → gain over the direct predictor −2, sd 1
    cells = [cell.strip() for cell in rows["`new`"].split("|")[2:-1]]
    assert cells[0] == f"8.5 [{8.5 - half / 2:.4g}, {8.5 + half / 2:.4g}]"
    assert cells[3] == f"-3.5 [{-3.5 - half / 2:.4g}, {-3.5 + half / 2:.4g}]"
    assert cells[4] == f"-2 [{-2 - half:.4g}, {-2 + half:.4g}]"
    # ref − direct = −5, −4, −3 → beats the direct predictor by 4 [4 − 2.484, 4 + 2.484]
    assert rows["`ref`"].split("|")[-2].strip() == f"4 [{4 - half:.4g}, {4 + half:.4g}]"
    assert rows[f"`{DIRECT_ARM}`"].split("|")[-2].strip() == "—"  # not compared with itself
    assert "`ref` beats the positional unigram" in section  # gain 2.5 [1.26, 3.74]
    assert "`new` does not beat the positional unigram" in section  # gain −3.5 [−4.74, −2.26]
    assert f"`{DIRECT_ARM}` does not beat the positional unigram" in section  # gain −1.5 [−2.74, −0.26]
    assert "`ref` beats the direct predictor" in section
    assert "`new`: cannot tell with 3 seeds whether it beats the direct predictor" in section
    for figure in ("nll_vs_unigram", "collapse"):  # shown here, not again under "Figures"
        assert f"](figures/{figure}.png)" in section and report.count(f"](figures/{figure}.png)") == 2


def test_beats_sentence_without_a_verdict():
    build = _load_build()
    straddles = build._beats("a", "positional unigram", dict(n=3, mean=0.2, ci_low=-0.1, ci_high=0.5))
    assert straddles.startswith("`a`: cannot tell with 3 seeds whether it beats the positional unigram")
    single = build._beats("a", "positional unigram", dict(n=1, mean=0.2, ci_low=math.nan, ci_high=math.nan))
    assert "cannot tell with 1 seed whether" in single and "no interval" in single


def test_nll_figure_draws_the_unigram_line(tmp_path, monkeypatch):
    grid_dir = make_grid_folder(tmp_path)
    tables = aggregate(grid_dir)
    build = _load_build()
    drawn = []
    monkeypatch.setattr(build, "_save", lambda figure, path: drawn.append(figure) or path)
    path = build.plot_nll_vs_unigram(tables["runs"], tables["final"], ["ref", "new", DIRECT_ARM], tmp_path)
    assert path.name == "nll_vs_unigram.png"
    (axis,) = drawn[0].axes
    handles, labels = axis.get_legend_handles_labels()
    line = handles[labels.index("positional unigram (test)")]
    assert list(line.get_ydata()) == [5.0, 5.0] and line.get_linestyle() == "--"
    assert {"ref", "new", DIRECT_ARM} <= set(labels) and axis.get_title() == "val/nll"


def test_report_on_a_grid_without_finished_runs(tmp_path):
    grid_dir = make_grid_folder(tmp_path, final={}, failed=(("ref", 0, "ValueError: boom"),))
    report = _load_build().build(grid_dir).read_text()
    assert "No figures yet" in report and "ValueError: boom" in report
    assert "## Does the model learn?" in report and "No test NLL yet" in report


def test_build_command_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "reports/build.py", "--grid", "nope", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "no grid" in result.stderr and "Traceback" not in result.stderr
