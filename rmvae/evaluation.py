"""Evaluate a checkpoint on held-out pieces: teacher-forced accuracy/NLL and musical statistics.

Teacher-forced numbers come from the LightningModule's own ``test_step`` (the same code that
logs validation metrics). Musical statistics compare continuations with the real music: every
test piece long enough is seeded with its first ``seed_measures`` measures and continued for
``continue_measures``, greedily and by sampling (temperature 1, seeded) since greedy decoding
tends to loop; the real measures at the same position form the ``bach/…`` reference. A sampled
mode's row for a piece is the mean over a few draws. Each statistic is reported as the mean over
pieces with a 95% Student t interval.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from rmvae.baselines import unigram_scores
from rmvae.data.datamodule import ChoraleDataModule
from rmvae.errors import UserError
from rmvae.intervals import mean_ci
from rmvae.metrics import STATISTICS, musical_statistics, pitch_class_distance, slice_measures
from rmvae.module import RMVAEModule, eval_generator, load_module
from rmvae.tasks import Composer, Piece, Sampling, default_sampling


def load_checkpoint(path: str | Path, encoding: str | None = None) -> RMVAEModule:
    """Load a trained module, with one clear message for a missing, corrupt or foreign checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist; train one with `rmvae train --out DIR` "
                        f"(it writes DIR/checkpoints/best.ckpt)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint '{path}' cannot be read ({type(error).__name__}); "
                        f"is it a complete rmvae .ckpt file?") from None
    hparams = raw.get("hyper_parameters", {}) if isinstance(raw, dict) else {}
    if "config" not in hparams or "encoding_info" not in hparams:
        raise UserError(f"'{path}' is not an rmvae checkpoint (no config/encoding_info hyper-parameters)")
    if encoding is not None and hparams["encoding_info"]["encoding"] != encoding:
        raise UserError(f"checkpoint '{path}' uses the {hparams['encoding_info']['encoding']} encoding; "
                        f"this needs {encoding}")
    return load_module(path).eval()


def test_datamodule(module: RMVAEModule, cache_dir=None) -> ChoraleDataModule:
    """The data of the module's own config, encoded with the checkpoint's pitch range."""
    data = replace(module.config.data, pitch_range=(module.pitch_range.low, module.pitch_range.high))
    datamodule = ChoraleDataModule(data, cache_dir=cache_dir)
    datamodule.setup()
    return datamodule


def teacher_forced(module: RMVAEModule, datamodule: ChoraleDataModule, split: str = "test") -> dict[str, float]:
    """The module's test metrics (accuracy, fill accuracy, NLL, harmony, baselines) on a split."""
    import lightning as L

    loader = {"test": datamodule.test_dataloader, "val": datamodule.val_dataloader,
              "train": datamodule.train_dataloader}[split]()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        results = trainer.test(module, dataloaders=loader, verbose=False)[0]
    return {key.replace("test/", f"{split}/"): float(value) for key, value in results.items()}


SAMPLE_MODE = {True: "latent", False: "sampled"}  # has latents → the mode of the sample written


def window_nlls(module: RMVAEModule, dataset) -> np.ndarray:
    """The importance-weighted next-measure NLL of every window ``(N,)``, in dataset order, with
    the same noise as ``test_step`` (so the mean is ``test/nll``)."""
    loader = DataLoader(dataset, batch_size=module.config.data.batch_size, shuffle=False)
    values = []
    module.eval()
    for batch_idx, batch in enumerate(loader):
        values.append(module.predictive_nll(batch, module.config.loss.nll_samples, eval_generator(batch_idx)).numpy())
    return np.concatenate(values)


def _gain(name: str, baseline: np.ndarray, model: np.ndarray) -> dict[str, float]:
    """How many nats per window the model beats a baseline by, with a paired 95% t-interval over windows."""
    mean, low, high = mean_ci(baseline - model)
    return {name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high}


# The trained baselines a model can be compared with: model.kind → what a message calls it. The
# kind is also the results' prefix (``direct_nll``, ``gain_vs_autoregressive``) and the option's name.
TRAINED_BASELINES = {"direct": "a direct predictor", "autoregressive": "an autoregressive baseline"}


def load_baseline(path: str | Path, kind: str) -> RMVAEModule:
    """A trained baseline checkpoint of ``model.kind`` ``kind``; another kind is refused in one line,
    since its gain would silently answer another question."""
    baseline = load_checkpoint(path)
    if baseline.config.model.kind != kind:
        raise UserError(f"'{path}' is not {TRAINED_BASELINES[kind]} (model.kind={baseline.config.model.kind}); "
                        f"train one with `rmvae train --model.kind={kind}`")
    return baseline


def check_same_data(module: RMVAEModule, baseline: RMVAEModule) -> None:
    """Refuse a baseline trained on other data: its windows and targets would not be the module's."""
    kind = baseline.config.model.kind
    if baseline.config.data != module.config.data or baseline.pitch_range != module.pitch_range:
        raise UserError(f"the {kind} baseline was trained on other data (config.data or pitch range differ); "
                        f"train it with the same data settings: `rmvae train --model.kind={kind} ...`")


def trained_baseline_scores(module: RMVAEModule, baseline: RMVAEModule, datamodule: ChoraleDataModule,
                            split: str, model_nll: np.ndarray) -> dict[str, float]:
    """``<kind>_nll``, ``_acc``, ``_acc_onsets`` of a trained baseline on the module's own windows, and
    ``gain_vs_<kind>``: the paired per-window gain; a baseline trained on other data is refused."""
    kind = baseline.config.model.kind
    check_same_data(module, baseline)
    scores = teacher_forced(baseline, datamodule, split)
    results = {f"{split}/{kind}_{key}": scores[f"{split}/{key}"] for key in ("nll", "acc", "acc_onsets")}
    results.update(_gain(f"{split}/gain_vs_{kind}", window_nlls(baseline, datamodule.datasets[split]), model_nll))
    return results


def baseline_comparison(module: RMVAEModule, datamodule: ChoraleDataModule, split: str = "test",
                        direct: RMVAEModule | None = None,
                        autoregressive: RMVAEModule | None = None) -> dict[str, float]:
    """The baselines on the module's own split and targets, and what the module gains over each.

    ``unigram_*``: the positional unigram counted on the training split (no context);
    ``direct_*``, ``autoregressive_*``: a direct predictor / autoregressive baseline checkpoint
    trained on the same data (if given; :func:`trained_baseline_scores`);
    ``gain_vs_*``: baseline NLL − model NLL per window, mean and 95% interval over windows.
    """
    dataset = datamodule.datasets[split]
    model_nll = window_nlls(module, dataset)
    unigram = unigram_scores(datamodule.datasets["train"], dataset, module.pitch_range)
    results = {f"{split}/unigram_{key}": value for key, value in unigram.items() if key != "per_window"}
    results.update(_gain(f"{split}/gain_vs_unigram", unigram["per_window"], model_nll))
    for baseline in (direct, autoregressive):
        if baseline is not None:
            results.update(trained_baseline_scores(module, baseline, datamodule, split, model_nll))
    return results


ModeFactory = Callable[[int], Composer]  # the seed of one draw → a fresh Composer


def _seeded(module: RMVAEModule, sampling: Sampling, seed: int) -> Composer:
    """A Composer drawing as ``sampling`` says from ``seed``: a mode's factory once partially applied."""
    return Composer(module, replace(sampling, seed=seed))


def mode_factory(module: RMVAEModule, sampling: Sampling) -> ModeFactory:
    """A decoding mode: a factory of Composers drawing as ``sampling`` says, from the seed of a draw."""
    return partial(_seeded, module, sampling)


def decoding_modes(module: RMVAEModule) -> dict[str, ModeFactory]:
    """The continuations every evaluation reports: greedy from the predicted mean, a latent drawn
    from the predicted Gaussian with greedy tokens (models with latents), tokens sampled at T = 1,
    and for a measure writer ``default``, the decoding ``rmvae generate`` uses (:func:`default_sampling`).
    Each is a factory taking the seed of one draw, so that draws can be repeated with other seeds."""
    modes = {"greedy": Sampling(), "latent": Sampling(latent_temperature=1.0), "sampled": Sampling(temperature=1.0)}
    if not module.model.has_latents:
        del modes["latent"]
    if module.config.model.writes:  # what `rmvae generate` does with this checkpoint by default
        modes["default"] = default_sampling(module)
    return {mode: mode_factory(module, sampling) for mode, sampling in modes.items()}


def _stochastic(composer: Composer) -> bool:
    """Whether a composer draws at random: greedy tokens from the latent mean give the same
    continuation every time, so one draw of it is all there is."""
    return composer.sampling.temperature > 0 or composer.sampling.latent_temperature > 0


def _statistics_row(notes: np.ndarray, n_voices: int, seed_measures: int, continue_measures: int,
                    seed_notes: np.ndarray, key_shift: int) -> dict[str, float]:
    """:func:`musical_statistics` of the continued measures of ``notes`` ``(N, 4)``, and their pitch-class
    distance to the seed measures."""
    row = musical_statistics(notes, n_voices, seed_measures, continue_measures, key_shift=key_shift)
    row["pitch_class_distance"] = pitch_class_distance(slice_measures(notes, seed_measures, continue_measures),
                                                       seed_notes)
    return row


def _mean_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per statistic, the mean over the draws where it is defined (NaN where it never is)."""
    return {key: mean_ci([row[key] for row in rows])[0] for key in rows[0]}


def _write_sample(notes: np.ndarray, path: Path, piece, n_voices: int, seed_measures: int,
                  continue_measures: int, mode: str) -> None:
    """The continuation ``(N, 4)`` as MIDI in the piece's own key, and its piano roll beside it."""
    from rmvae.render import notes_to_midi, pianoroll_png

    notes_to_midi(notes, path, key_shift=piece.key_shift, n_voices=n_voices)
    pianoroll_png(notes, Path(path).with_suffix(".png"), n_voices, seed_measures=seed_measures,
                  title=f"{piece.name}: {seed_measures} real + {continue_measures} measures ({mode})")


def continuation_statistics(module: RMVAEModule, datamodule: ChoraleDataModule, split: str = "test",
                            seed_measures: int = 8, continue_measures: int = 8, seed: int = 0,
                            sample_path: Path | None = None, modes: dict[str, ModeFactory] | None = None,
                            draws: int = 3) -> dict[str, float]:
    """Musical statistics of continuations beside the real continuations.

    ``modes`` maps a name to a factory of a fresh :class:`Composer` from the seed of a draw;
    :func:`decoding_modes` by default. A stochastic mode continues each piece ``draws`` times, with
    seeds ``seed, seed + 1, …`` (the same for every piece), and the piece's row is the mean over its
    draws: one draw is a noisy measurement of what the model does with that chorale, and averaging
    draws makes it less so, while the interval stays one over chorales (the draws of a piece are not
    independent pieces). A deterministic mode (greedy: :func:`_stochastic` is false) draws once.
    ``draws`` is in the results; the sample written to ``sample_path`` is the first draw of the first piece.
    """
    if draws < 1:
        raise UserError(f"draws must be at least 1; got {draws}")
    pitch_range, n_voices = module.pitch_range, module.n_voices
    modes = decoding_modes(module) if modes is None else modes
    rows: dict[str, list[dict]] = {**{mode: [] for mode in modes}, "bach": []}
    sample_written = False
    for piece in datamodule.pieces[split]:
        if len(piece.tokens) < seed_measures + continue_measures:
            continue
        real = datamodule.datasets[split].measures_of(piece)[:seed_measures + continue_measures]
        real_notes = module.encoding.to_notes(real, pitch_range)
        seed_notes = slice_measures(real_notes, 0, seed_measures)
        rows["bach"].append(_statistics_row(real_notes, n_voices, seed_measures, continue_measures, seed_notes,
                                            piece.key_shift))
        for mode, make_composer in modes.items():
            composer, drawn = make_composer(seed), []
            for draw in range(draws if _stochastic(composer) else 1):
                composer = make_composer(seed + draw) if draw else composer
                start = Piece(real[:seed_measures], np.zeros((seed_measures, n_voices), bool), piece.key_shift)
                notes = module.encoding.to_notes(composer.complete(start, continue_measures).measures, pitch_range)
                drawn.append(_statistics_row(notes, n_voices, seed_measures, continue_measures, seed_notes,
                                             piece.key_shift))
                if sample_path is not None and mode == SAMPLE_MODE[module.model.has_latents] and not sample_written:
                    _write_sample(notes, sample_path, piece, n_voices, seed_measures, continue_measures, mode)
                    sample_written = True
            rows[mode].append(_mean_row(drawn))
    results: dict[str, float] = {"continuations": float(len(rows["bach"])), "draws": float(draws)}
    for mode, table in rows.items():
        for statistic in (*STATISTICS, "pitch_class_distance"):
            mean, low, high = mean_ci([row[statistic] for row in table])
            results[f"{mode}/{statistic}"] = mean
            results[f"{mode}/{statistic}_ci_low"] = low
            results[f"{mode}/{statistic}_ci_high"] = high
    return results


def evaluate_checkpoint(checkpoint: str | Path, split: str = "test", seed: int = 0,
                        sample_path: Path | None = None, cache_dir=None, seed_measures: int = 8,
                        continue_measures: int = 8, direct_checkpoint: str | Path | None = None,
                        autoregressive_checkpoint: str | Path | None = None, draws: int = 3) -> dict[str, float]:
    """Every evaluation number of a checkpoint as one flat dict (``test/acc``, ``greedy/repeat_rate``, …).

    Continuations use the pieces of at least ``seed_measures + continue_measures`` measures;
    ``continuations`` says how many there were (0: every statistic is NaN); a sampled mode averages
    ``draws`` draws per piece. The baseline checkpoints are checked before anything is computed.
    """
    if seed_measures < 1 or continue_measures < 1:
        raise UserError(f"seed and continuation lengths must be at least 1 measure; "
                        f"got {seed_measures} and {continue_measures}")
    if draws < 1:  # before any model runs, not after the teacher-forced pass
        raise UserError(f"--draws must be at least 1; got {draws}")
    module = load_checkpoint(checkpoint)
    baselines = {kind: load_baseline(path, kind) for kind, path in
                 (("direct", direct_checkpoint), ("autoregressive", autoregressive_checkpoint)) if path is not None}
    for baseline in baselines.values():
        check_same_data(module, baseline)
    datamodule = test_datamodule(module, cache_dir)
    results = teacher_forced(module, datamodule, split)
    results.update(baseline_comparison(module, datamodule, split, **baselines))
    results.update(continuation_statistics(module, datamodule, split, seed_measures, continue_measures, seed=seed,
                                           sample_path=sample_path, draws=draws))
    return results
