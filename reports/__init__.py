"""Figures and a Markdown report of an ablation grid, from its saved tables only (no torch, no Lightning).

Modules:
    build     the entry point, ``python reports/build.py --grid NAME`` (or ``python -m reports.build``),
              and ``write_report`` (report.md).
    tables    the saved tables a report reads, the metrics it shows, the arms' order.
    figures   the PNG figures: learning curves, NLL against the unigram, collapse, final metrics, dose response.
    samples   one MIDI, PNG and WAV per arm.
    text      numbers, intervals, verdicts and sentences shared by the sections.
    sections  does the model learn; dose response; the thesis's conclusions against the runs.

Imports run one way: ``reports`` reads what ``ablations`` writes (``ablations.aggregate``, ``ablations.grids``,
``ablations.runfolder``) and ``ablations`` does not import ``reports``, except its command line
(``ablations.run``), which calls :func:`reports.build.build` when a grid is done. The folders under
``reports/`` (``reports/<grid>/``) are output, not packages.
"""
