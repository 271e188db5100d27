"""The band engine: a clock that keeps time, a worker thread that predicts, and the band's rule when it is late.

Threads:

- the **clock thread** (the caller of :meth:`BandEngine.run`) walks the sixteenth grid with
  ``clock.sleep_until``; at each step it sounds the band's tokens (and the player file, and
  the metronome); at each bar line ``b`` it closes measure ``b − 1`` (the player's notes
  quantised to the grid + what the band actually played) and *submits* the prediction of
  measure ``b − 1 + offset`` (``b + 1`` for offset 2) to the worker's queue, without waiting;
- the **worker thread** takes jobs in order, pushes each completed measure into the predictor
  (the expert cache) and predicts; if several jobs queued up behind a slow prediction, all
  their measures are pushed but only the newest is predicted (the older ones are skipped, and
  will count as late). After each prediction it encodes the band's part of the measure that
  just started (known a measure before it is pushed), so a bar line only encodes the player;
- mido's **input thread** (live play) timestamps the player's notes with the same clock.

At bar line ``b`` the band plays the prediction made for ``b`` if the clock says it was ready
in time (:meth:`rmvae.band.clock.RealClock.on_time`); otherwise the lateness is counted and the
band holds: it repeats its last measure (or stays silent if it has not played yet). The first
``offset`` measures have no prediction: the band joins at measure ``offset``.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rmvae.config import STEPS_PER_MEASURE
from rmvae.data.notes import PitchRange, tokens_to_notes
from rmvae.band.clock import STEPS_PER_BEAT, step_seconds
from rmvae.band.player import measure_tokens


class Predictor(Protocol):
    """:mod:`rmvae.band.predictor`; ``encode_ahead(tokens, voices)`` is optional (idle-time work)."""

    def push(self, tokens: np.ndarray, mask: np.ndarray) -> None: ...

    def predict(self) -> np.ndarray: ...


class Output(Protocol):
    """Where the music goes while it plays (a MIDI port); pitches are model pitches."""

    def note_on(self, voice: int, pitch: int) -> None: ...

    def note_off(self, voice: int, pitch: int) -> None: ...

    def click(self, downbeat: bool) -> None: ...

    def close(self) -> None: ...


class SilentOutput:
    """Plays nothing (headless runs)."""

    def note_on(self, voice: int, pitch: int) -> None:
        pass

    def note_off(self, voice: int, pitch: int) -> None:
        pass

    def click(self, downbeat: bool) -> None:
        pass

    def close(self) -> None:
        pass


class PredictionJob:
    """One bar line's request: push ``tokens`` (measure ``measure``), predict measure ``target``."""

    def __init__(self, measure: int, target: int, tokens: np.ndarray, mask: np.ndarray, submitted_at: float):
        self.measure, self.target = measure, target
        self.tokens, self.mask = tokens, mask
        self.submitted_at = submitted_at  # clock time of the bar line
        self.result: np.ndarray | None = None  # (V, S) tokens
        self.latency: float | None = None  # wall seconds of push + predict
        self.skipped = False  # a newer job was queued before this one was predicted
        self.error: BaseException | None = None
        self._done = threading.Event()

    def is_done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def finish(self) -> None:
        self._done.set()


class AheadJob:
    """Encode the band's part of a measure that just started (the predictor's idle-time work)."""

    def __init__(self, measure: int, tokens: np.ndarray, voices: tuple[int, ...]):
        self.measure, self.tokens, self.voices = measure, tokens, voices


class PredictionWorker:
    """A daemon thread that runs the predictor for queued :class:`PredictionJob` s."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.jobs: queue.Queue[PredictionJob | AheadJob | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="band-predictor", daemon=True)
        self.latencies: list[float] = []  # seconds, one per prediction made
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: PredictionJob | AheadJob) -> None:
        self.jobs.put(job)

    def stop(self, timeout: float = 5.0) -> None:
        self.jobs.put(None)
        self.thread.join(timeout)

    def _loop(self) -> None:
        while True:
            batch = [self.jobs.get()]
            while True:  # everything already waiting: only the newest needs a prediction
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            batch = [job for job in batch if job is not None]
            newest = max((i for i, job in enumerate(batch) if isinstance(job, PredictionJob)), default=-1)
            for i, job in enumerate(batch):
                if isinstance(job, AheadJob):
                    try:
                        encode_ahead = getattr(self.predictor, "encode_ahead", None)
                        if encode_ahead is not None:
                            encode_ahead(job.tokens, job.voices)
                    except BaseException as error:
                        self.error = error
                    continue
                started = time.perf_counter()
                try:
                    self.predictor.push(job.tokens, job.mask)
                    if i == newest:
                        job.result = self.predictor.predict()
                        job.latency = time.perf_counter() - started
                        self.latencies.append(job.latency)
                    else:
                        job.skipped = True
                except BaseException as error:  # surfaced on the clock thread at the job's bar line
                    job.error = self.error = error
                job.finish()
            if stop:
                return


@dataclass
class BandReport:
    """What happened: per measure, whether the band played a prediction, held, or was silent."""

    tempo: float
    measures: int = 0  # measures the clock played through
    predictions: int = 0  # predictions the worker finished
    late: int = 0  # bar lines whose prediction was not ready (the band held or stayed silent)
    band: list[str] = field(default_factory=list)  # per measure: "silent", "predicted", "held"
    latencies: list[float] = field(default_factory=list)  # seconds, per prediction made
    interrupted: bool = False

    def summary(self) -> dict:
        """The numbers `rmvae band` prints: counts and prediction latency p50/p95/max in ms."""
        latencies = np.array(self.latencies) * 1000.0
        stats = ({"p50": round(float(np.percentile(latencies, 50)), 3),
                  "p95": round(float(np.percentile(latencies, 95)), 3),
                  "max": round(float(latencies.max()), 3)} if len(latencies) else
                 {"p50": None, "p95": None, "max": None})
        return {"measures": self.measures, "predictions": self.predictions, "late": self.late,
                "held": self.band.count("held"), "band_measures": self.band.count("predicted"),
                "tempo": self.tempo, "latency_ms": stats, "interrupted": self.interrupted}


class BandEngine:
    """Plays the band against the player on a clock; see the module docstring for the threads.

    Args:
        predictor: fed completed measures ``(V, S)``, predicts measure ``last + offset``.
        clock: :class:`~rmvae.band.clock.RealClock` or :class:`~rmvae.band.clock.SimulatedClock`.
        player: :class:`~rmvae.band.player.FilePlayer` or :class:`~rmvae.band.player.LivePlayer`.
        n_voices: V of the model.
        player_voice: the voice the player plays.
        band_voices: the voices the model plays (not the player's).
        pitch_range: the model's pitch range (tokens ↔ MIDI pitches).
        tempo: quarter notes per minute.
        n_measures: measures to play; None = until interrupted (Ctrl-C).
        offset: measures between the last input and the predicted one; must be ≥ 2 so a
            prediction has at least one whole measure to finish. Default: the predictor's
            ``offset``, the checkpoint's ``data.offset`` (2 for a predictor without one).
        output: where notes sound while playing (default: nowhere).
        metronome: click every beat (accent on the downbeat).
        lead_in: seconds between :meth:`run` and the count-in (or the first downbeat).
        count_in: measures of clicks before the first downbeat (whatever ``metronome``), so a
            live player knows where measure 1 starts.
        on_measure: called on the clock thread after each bar line with ``(measure, status)``.
    """

    def __init__(self, predictor: Predictor, clock, player, n_voices: int, player_voice: int, band_voices,
                 pitch_range: PitchRange, tempo: float, n_measures: int | None = None, offset: int | None = None,
                 output: Output | None = None, metronome: bool = False, lead_in: float = 0.0, count_in: int = 0,
                 on_measure=None):
        band_voices = tuple(int(v) for v in band_voices)
        if not 0 <= player_voice < n_voices:
            raise ValueError(f"player voice {player_voice} is not in [0, {n_voices})")
        if not band_voices or any(not 0 <= v < n_voices for v in band_voices) or player_voice in band_voices:
            raise ValueError(f"band voices {band_voices} must be in [0, {n_voices}) without the player's {player_voice}")
        offset = offset if offset is not None else getattr(predictor, "offset", 2)  # the checkpoint's
        if offset < 2:
            raise ValueError(f"offset {offset}: a prediction made at a bar line for the measure that starts "
                             "there is always late; the band needs offset ≥ 2")
        if n_measures is not None and n_measures < 1:
            raise ValueError(f"n_measures must be ≥ 1; got {n_measures}")
        self.predictor, self.clock, self.player = predictor, clock, player
        self.n_voices, self.player_voice, self.band_voices = n_voices, player_voice, band_voices
        self.pitch_range = pitch_range
        self.tempo, self.n_measures, self.offset = tempo, n_measures, offset
        self.output = output if output is not None else SilentOutput()
        self.metronome, self.lead_in, self.count_in, self.on_measure = metronome, lead_in, count_in, on_measure
        self.step_seconds = step_seconds(tempo)
        self.band_tokens: list[np.ndarray] = []  # per measure (V, S): the band voices as played
        self.input_tokens: list[np.ndarray] = []  # per closed measure (V, S): what the model was fed
        self.input_masks: list[np.ndarray] = []  # per closed measure (V,)
        self.report = BandReport(tempo=tempo)
        self._jobs: dict[int, PredictionJob] = {}  # target measure → job
        self._sounding: dict[int, int | None] = {v: None for v in band_voices}  # band pitch per voice
        self._player_sounding: set[int] = set()
        self._schedule = self._player_schedule()
        self._song_start = 0.0

    # --- the clock thread ---------------------------------------------------------------------

    def run(self) -> BandReport:
        """Play until ``n_measures`` are done (or Ctrl-C); returns the report."""
        worker = PredictionWorker(self.predictor)
        worker.start()
        beat_seconds = self.step_seconds * STEPS_PER_BEAT
        count_in_beats = self.count_in * STEPS_PER_MEASURE // STEPS_PER_BEAT
        self._song_start = self.clock.now() + self.lead_in + count_in_beats * beat_seconds
        self.player.begin(self.clock, self._song_start)
        step = 0
        try:
            for beat in range(count_in_beats):
                self.clock.sleep_until(self._song_start - (count_in_beats - beat) * beat_seconds)
                self.output.click(downbeat=beat % (STEPS_PER_MEASURE // STEPS_PER_BEAT) == 0)
            while self.n_measures is None or step < self.n_measures * STEPS_PER_MEASURE:
                self.clock.sleep_until(self._song_start + step * self.step_seconds)
                measure, position = divmod(step, STEPS_PER_MEASURE)
                if position == 0:
                    self._bar_line(measure, worker)
                self._play_step(measure, position)
                step += 1
            self.clock.sleep_until(self._song_start + step * self.step_seconds)
        except KeyboardInterrupt:
            self.report.interrupted = True
        finally:
            self.report.measures = step // STEPS_PER_MEASURE
            self._silence()
            worker.stop()
            self.player.close()
            self.report.latencies = list(worker.latencies)
            self.report.predictions = len(worker.latencies)
        return self.report

    def _bar_line(self, measure: int, worker: PredictionWorker) -> None:
        if worker.error is not None:  # even a prediction that was too late to be used
            raise RuntimeError("the band's predictor failed") from worker.error
        self._choose_band_measure(measure)  # first, so this bar line's new job cannot overtake it
        if measure >= 1:  # close the measure that just ended and ask for measure + offset − 1
            closed = measure - 1
            tokens, mask = self._closed_measure(closed)
            target = closed + self.offset
            if self.n_measures is None or target < self.n_measures:
                job = PredictionJob(closed, target, tokens, mask, submitted_at=self.clock.now())
                self._jobs[target] = job
                worker.submit(job)
        if self.report.band[measure] != "silent":  # the band's part of this measure is known now
            worker.submit(AheadJob(measure, self.band_tokens[measure], self.band_voices))
        if self.on_measure is not None:
            self.on_measure(measure, self.report.band[-1])

    def _closed_measure(self, measure: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens ``(V, S)`` and mask ``(V,)`` of a finished measure: the player's part + the band's."""
        end = (measure + 1) * STEPS_PER_MEASURE
        player = measure_tokens(self.player.notes_until(end), measure, self.n_voices, self.pitch_range)
        tokens = self.band_tokens[measure].copy()
        tokens[self.player_voice] = player[self.player_voice]
        mask = np.zeros(self.n_voices, dtype=bool)
        mask[self.player_voice] = True
        if self.report.band[measure] != "silent":
            mask[list(self.band_voices)] = True
        self.input_tokens.append(tokens)
        self.input_masks.append(mask)
        return tokens, mask

    def _choose_band_measure(self, measure: int) -> None:
        """The band's tokens for the measure starting now: the prediction if on time, else hold."""
        job = self._jobs.pop(measure, None)
        rests = np.full((self.n_voices, STEPS_PER_MEASURE), self.pitch_range.rest, dtype=np.int64)
        status = "silent"
        tokens = rests
        if job is not None:
            on_time = self.clock.on_time(job, deadline=self.clock.now())
            if job.error is not None:
                raise RuntimeError(f"the band's prediction of measure {measure} failed") from job.error
            if on_time and job.result is not None:  # a skipped job is done but has no result
                tokens, status = rests.copy(), "predicted"
                tokens[list(self.band_voices)] = job.result[list(self.band_voices)]
            else:
                self.report.late += 1
        if status != "predicted" and self.report.band and self.report.band[-1] != "silent":
            tokens, status = self.band_tokens[-1].copy(), "held"  # late: repeat the last measure
        self.band_tokens.append(self._continue_holds(tokens))
        self.report.band.append(status)

    def _continue_holds(self, tokens: np.ndarray) -> np.ndarray:
        """A *note_continue* with nothing sounding is a rest (as :meth:`RMVAE.decode_tokens` does inside a measure)."""
        tokens = tokens.copy()
        rest, hold = self.pitch_range.rest, self.pitch_range.hold
        for voice in self.band_voices:
            previous = self.band_tokens[-1][voice, -1] if self.band_tokens else rest
            for step in range(STEPS_PER_MEASURE):
                if tokens[voice, step] == hold and previous == rest:
                    tokens[voice, step] = rest
                previous = tokens[voice, step]
        return tokens

    # --- sound --------------------------------------------------------------------------------

    def _player_schedule(self) -> dict[int, list[tuple[str, int]]]:
        """Step → ("on"/"off", pitch) events of a player file (a live player sounds itself)."""
        notes = self.player.scheduled_notes()
        schedule: dict[int, list[tuple[str, int]]] = {}
        if notes is None:
            return schedule
        for _, start, duration, pitch in notes:
            schedule.setdefault(int(start + duration), []).append(("off", int(pitch)))
        for _, start, _, pitch in notes:  # offs first at a step, so a repeated pitch sounds again
            schedule.setdefault(int(start), []).append(("on", int(pitch)))
        return schedule

    def _play_step(self, measure: int, position: int) -> None:
        step = measure * STEPS_PER_MEASURE + position
        for kind, pitch in self._schedule.get(step, ()):
            if kind == "off" and pitch in self._player_sounding:
                self.output.note_off(self.player_voice, pitch)
                self._player_sounding.discard(pitch)
            elif kind == "on":
                self.output.note_on(self.player_voice, pitch)
                self._player_sounding.add(pitch)
        tokens = self.band_tokens[measure]
        for voice in self.band_voices:
            token = int(tokens[voice, position])
            if token == self.pitch_range.hold:
                continue
            if self._sounding[voice] is not None:
                self.output.note_off(voice, self._sounding[voice])
                self._sounding[voice] = None
            if token < self.pitch_range.n_pitches:
                pitch = self.pitch_range.low + token
                self.output.note_on(voice, pitch)
                self._sounding[voice] = pitch
        if self.metronome and position % STEPS_PER_BEAT == 0:
            self.output.click(downbeat=position == 0)

    def _silence(self) -> None:
        for voice, pitch in self._sounding.items():
            if pitch is not None:
                self.output.note_off(voice, pitch)
        for pitch in self._player_sounding:
            self.output.note_off(self.player_voice, pitch)
        self.output.close()

    # --- results ------------------------------------------------------------------------------

    def played_notes(self) -> np.ndarray:
        """Everything played, ``(N, 4)`` in model pitches: the player's notes as played + the band's."""
        end = self.report.measures * STEPS_PER_MEASURE
        player = self.player.notes_until(end) if end else np.zeros((0, 4), dtype=np.int64)
        if not self.band_tokens or not end:
            return player
        band = tokens_to_notes(np.stack(self.band_tokens[:self.report.measures]), self.pitch_range)
        band = band[np.isin(band[:, 0], self.band_voices)]
        notes = np.concatenate([player.reshape(-1, 4), band]).astype(np.int64)
        return notes[np.lexsort((notes[:, 3], notes[:, 1], notes[:, 0]))]
