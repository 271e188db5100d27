"""Band player (docs/design.md §6): the user plays one voice live, the model plays the others.

- :mod:`rmvae.band.clock`: the sixteenth grid, :func:`quantise`, a real and a simulated clock;
- :mod:`rmvae.band.player`: the player's part, live (mido) or from a MIDI file;
- :mod:`rmvae.band.predictor`: the measure ``t + 2`` from cached per-measure experts (or re-encoded);
- :mod:`rmvae.band.engine`: the clock thread, the prediction worker, hold-when-late;
- :mod:`rmvae.band.ports`: MIDI ports and the output sink.

The ``rmvae band`` command (:mod:`rmvae.commands.band`) wires them together.
"""
from rmvae.band.clock import RealClock, SimulatedClock, measure_seconds, quantise, step_seconds
from rmvae.band.engine import BandEngine, BandReport, PredictionJob, PredictionWorker, SilentOutput
from rmvae.band.player import FilePlayer, LivePlayer, measure_tokens, read_player_file
from rmvae.band.predictor import CachedPredictor, NaivePredictor

__all__ = ["BandEngine", "BandReport", "CachedPredictor", "FilePlayer", "LivePlayer", "NaivePredictor",
           "PredictionJob", "PredictionWorker", "RealClock", "SilentOutput", "SimulatedClock", "measure_seconds",
           "measure_tokens", "quantise", "read_player_file", "step_seconds"]
