"""Tasks from a trained checkpoint (docs/design.md §5): what each task must keep, what it must write.

One tiny model (offset 1, 4-measure windows) is trained once for these tests and reused by
test_generate_cli.py and test_evaluate.py (``trained_checkpoint``). It is barely trained, so
the tests check invariants against independent truths (the input's own notes, the model's
API called directly, hand-written masks), not musical quality. Such a model decodes nearly the
same measure whatever its latent, so what the model is *shown* is checked where it is shown:
``model_calls`` records every forward pass (only the unmasked content) and every decoded latent.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rmvae.config import (STEPS_PER_MEASURE, Config, DataConfig, LossConfig, ModelConfig, TrainConfig,
                          apply_overrides)
from rmvae.profiles import THESIS_DESIGN
from rmvae.data.notes import VOICE, notes_to_tokens, tokens_to_notes
from rmvae.evaluation import load_checkpoint
from rmvae.evaluation import test_datamodule as evaluation_datamodule  # not a test: renamed for pytest
from rmvae.module import RMVAEModule
from rmvae.tasks import Composer, Piece, Sampling, TaskError, parse_mask

N_VOICES = 4
WINDOW = 4  # DataConfig.n_measures of the test model


def task_config(folder) -> Config:
    """A tiny offset-1 model; lr 1e-2 so 30 steps leave it writing some onsets, not only holds.

    β stays 0 (KL annealing starts at the end): with the KL on from the start, 30 steps collapse
    every voice expert to logvar ≈ 20, posteriors equal the prior and interpolation has no ends.
    """
    return Config(data=DataConfig(source=str(folder), split=(0.6, 0.2, 0.2), batch_size=16, n_measures=WINDOW,
                                  offset=1),
                  model=ModelConfig(size="small", width_scale=0.25, z_dim=8),
                  loss=LossConfig(n_subsets=1, kl_start=1.0, kl_end=1.0),
                  train=TrainConfig(max_steps=30, lr=1e-2, wandb=False, log_every_n_steps=1,
                                     limit_val_batches=1.0))


def trained_checkpoint(chorale_folder, cache_dir, tmp_path_factory) -> Path:
    """Train the shared test model once per session (the other task test files import this)."""
    out = tmp_path_factory.getbasetemp() / "tasks-model"
    best = out / "checkpoints" / "best.ckpt"
    if not best.exists():
        from rmvae.train import train

        train(task_config(chorale_folder), out, progress_bar=False, cache_dir=cache_dir)
    return best


@pytest.fixture(scope="module")
def module(chorale_folder, cache_dir, tmp_path_factory):
    return load_checkpoint(trained_checkpoint(chorale_folder, cache_dir, tmp_path_factory))


@pytest.fixture(scope="module")
def datamodule(module, cache_dir):
    return evaluation_datamodule(module, cache_dir)


@pytest.fixture(scope="module")
def chorale(datamodule) -> Piece:
    """The first 8 measures of the longest test chorale."""
    encoded = max(datamodule.pieces["test"], key=lambda p: len(p.tokens))
    tokens = encoded.tokens[:8].astype(np.int64)
    return Piece(tokens, np.zeros(tokens.shape[:2], dtype=bool), encoded.key_shift)


@pytest.fixture(scope="module")
def other_chorale(datamodule) -> Piece:
    encoded = min(datamodule.pieces["test"], key=lambda p: len(p.tokens))
    tokens = encoded.tokens.astype(np.int64)
    return Piece(tokens, np.zeros(tokens.shape[:2], dtype=bool), encoded.key_shift)


def voice_notes(tokens: np.ndarray, voice: int, pitch_range) -> list[tuple[int, int, int]]:
    """(start, duration, pitch) of one voice's notes."""
    notes = tokens_to_notes(tokens, pitch_range)
    return [tuple(n[1:]) for n in notes[notes[:, VOICE] == voice].tolist()]


def scrambled(measures: np.ndarray, hidden: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray:
    """The piece with random tokens in every hidden (measure, voice): the model must not see them."""
    out = measures.copy()
    rng = np.random.default_rng(seed)
    out[hidden] = rng.integers(0, n_classes, size=out[hidden].shape)
    return out


@contextmanager
def model_calls(model):
    """Record what each forward pass may see, and every latent handed to the decoders.

    ``calls`` holds, per forward pass, ``(inputs, input_mask, target, target_mask)`` with every
    masked-out measure/voice replaced by -1: exactly the information the model is given.
    ``latents`` holds every z given to the decoders (:meth:`RMVAE.decode`, or :meth:`RMVAE.write`
    for a measure writer, which writes without decode), and ``model.decode_states`` (set while
    recording) the temporal state passed beside it (None where none was).
    """
    calls, latents, states = [], [], []
    model.decode_states = states
    writing = []  # non-empty while RMVAE.write runs (recorded there; a factorised write decodes inside)

    def visible(values, mask):
        return torch.where(mask[..., None].bool(), values, torch.full_like(values, -1)).clone()

    def on_forward(_, args, kwargs):
        inputs, input_mask, target, target_mask = (list(args) + [None, None])[:4]
        target = kwargs.get("target", target)
        target_mask = kwargs.get("target_mask", target_mask)
        seen_target = None if target is None or target_mask is None else visible(target, target_mask)
        calls.append((visible(inputs, input_mask), input_mask.clone(), seen_target,
                      None if target_mask is None else target_mask.clone()))

    hook = model.register_forward_pre_hook(on_forward, with_kwargs=True)
    original_decode = model.decode

    original_write = model.write

    def record(z, state):
        latents.append(z.detach().clone())
        states.append(None if state is None else state.detach().clone())

    def decode(z, state=None, *teacher):
        if not writing:
            record(z, state)
        return original_decode(z, state, *teacher)

    def write(z, state, *args, **kwargs):
        record(z, state)
        writing.append(True)
        try:
            return original_write(z, state, *args, **kwargs)
        finally:
            writing.pop()

    model.decode, model.write = decode, write
    try:
        yield calls, latents
    finally:
        hook.remove()
        del model.decode, model.write
        del model.decode_states


def assert_greedy_writing(model, z, state, tokens):
    """Every token of measures ``tokens (N, V, S)`` written after nothing (an unknown previous
    measure, a zero writer state) is the most likely one given those before it, as the writer scores
    it teacher-forced: the measures are greedy writing from ``z (N, Z)`` and ``state (N, W)`` alone
    (a hold is not allowed after a rest or an unknown token: nothing sounds to be held)."""
    writer = model.writer
    tokens = torch.as_tensor(tokens).transpose(1, 2)  # (N, S, V)
    sequence = torch.cat([torch.full_like(tokens, writer.unknown), tokens], dim=1)  # 16 unknown steps first
    with torch.no_grad():
        cond = model.decoder_input(z.clone(), state.clone()).unsqueeze(1).expand(-1, STEPS_PER_MEASURE, -1)
        log_probs = writer(sequence, cond)  # (N, S, V, C)
    before = sequence[:, STEPS_PER_MEASURE - 1:-1]  # each voice's token one step earlier
    no_hold = (before == writer.rest) | (before == writer.unknown)
    log_probs[..., writer.hold] = log_probs[..., writer.hold].masked_fill(no_hold, float("-inf"))
    chosen = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(chosen, log_probs.amax(dim=-1))


def assert_same_calls(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            assert (x is None and y is None) or torch.equal(x, y)


# --- fill ------------------------------------------------------------------------------------


def test_fill_keeps_other_voices_note_for_note_and_writes_the_filled_one_from_measure_one(module, chorale):
    pitch_range = module.pitch_range
    with model_calls(module.model) as (calls, _):
        result = Composer(module).fill(chorale, [2])
    assert result.measures.shape == chorale.measures.shape
    for voice in (0, 1, 3):
        assert voice_notes(result.measures, voice, pitch_range) == voice_notes(chorale.measures, voice, pitch_range)
        np.testing.assert_array_equal(result.measures[:, voice], chorale.measures[:, voice])
    expected_generated = np.zeros((chorale.n_measures, N_VOICES), dtype=bool)
    expected_generated[:, 2] = True
    np.testing.assert_array_equal(result.generated, expected_generated)
    assert not np.array_equal(result.measures[:, 2], chorale.measures[:, 2])  # a barely trained model is not Bach

    # One prediction per measure, measure 0 included: its context is all left padding (masked),
    # its conditioning the three kept voices of measure 0.
    assert len(calls) == chorale.n_measures
    inputs, input_mask, target, target_mask = calls[0]
    assert not input_mask.any() and (inputs == -1).all()
    assert target_mask.tolist() == [[True, True, False, True]]
    np.testing.assert_array_equal(target[0, [0, 1, 3]].numpy(), chorale.measures[0, [0, 1, 3]])
    # ...and the filled voice of measure 0 is the model's own answer to exactly that question.
    padding = torch.full((1, WINDOW, N_VOICES, STEPS_PER_MEASURE), pitch_range.rest, dtype=torch.long)
    known = torch.from_numpy(chorale.measures[0]).clone()[None]
    known[0, 2] = pitch_range.rest
    with torch.inference_mode():
        output = module.model(padding, torch.zeros((1, WINDOW, N_VOICES), dtype=torch.bool), known,
                              torch.tensor([[True, True, False, True]]), sample=False, reconstruct=False)
        first = module.model.decode_tokens(output.prediction)[0, 2].numpy()
    np.testing.assert_array_equal(result.measures[0, 2], first)
    # Measure 3 sees measures 0–2: kept voices as given, the filled voice as generated.
    inputs, input_mask, target, target_mask = calls[3]
    assert input_mask[0, -3:].all() and not input_mask[0, 0].any()
    np.testing.assert_array_equal(inputs[0, -3:].numpy(), result.measures[:3])


def test_fill_never_shows_the_model_the_voice_it_regenerates(module, chorale):
    hidden = np.zeros((chorale.n_measures, N_VOICES), dtype=bool)
    hidden[:, 1] = True
    noisy = Piece(scrambled(chorale.measures, hidden, module.pitch_range.n_classes), chorale.generated)
    with model_calls(module.model) as (calls, _):
        result = Composer(module).fill(chorale, [1])
    with model_calls(module.model) as (noisy_calls, _):
        noisy_result = Composer(module).fill(noisy, [1])
    np.testing.assert_array_equal(noisy_result.measures, result.measures)
    assert_same_calls(calls, noisy_calls)


@pytest.mark.parametrize("voices, message", [([], "at least one voice"), ([4], r"out of range.*0–3"),
                                             ([0, 1, 2, 3], "redo")])
def test_fill_rejects_bad_voices(module, chorale, voices, message):
    with pytest.raises(TaskError, match=message):
        Composer(module).fill(chorale, voices)


# --- harmonize, redo, complete -----------------------------------------------------------------


def test_harmonize_keeps_the_melody_and_fills_every_measure_of_the_other_voices(module):
    pitch_range = module.pitch_range
    melody_notes = np.array([(0, 4 * i, 4, pitch) for i, pitch in enumerate([67, 69, 71, 72, 74, 72, 71, 69,
                                                                             67, 71, 74, 72])] + [(0, 48, 16, 67)])
    melody, _ = notes_to_tokens(melody_notes, 4, 1, pitch_range)
    result = Composer(module).harmonize(melody.astype(np.int64), melody_voice=1, key_shift=3, tempo=90.0)
    assert result.n_measures == 4 and (result.key_shift, result.tempo) == (3, 90.0)
    np.testing.assert_array_equal(result.measures[:, 1], melody[:, 0])
    assert voice_notes(result.measures, 1, pitch_range) == [tuple(n[1:]) for n in melody_notes.tolist()]
    np.testing.assert_array_equal(result.generated, np.array([[True, False, True, True]] * 4))
    with pytest.raises(TaskError, match="one-voice melody"):
        Composer(module).harmonize(np.zeros((4, 2, STEPS_PER_MEASURE), dtype=np.int64))


def test_redo_rewrites_every_voice(module, chorale):
    result = Composer(module).redo(chorale)
    assert result.measures.shape == chorale.measures.shape
    assert result.generated.all()
    assert not np.array_equal(result.measures, chorale.measures)


def test_complete_keeps_the_seed_and_adds_exactly_n_measures(module, chorale):
    result = Composer(module).complete(chorale, 3)
    assert result.n_measures == chorale.n_measures + 3
    np.testing.assert_array_equal(result.measures[:chorale.n_measures], chorale.measures)
    np.testing.assert_array_equal(result.generated, np.repeat([[False]] * 8 + [[True]] * 3, N_VOICES, axis=1))
    assert ((result.measures >= 0) & (result.measures < module.pitch_range.n_classes)).all()
    with pytest.raises(TaskError, match="at least 1"):
        Composer(module).complete(chorale, 0)


@pytest.fixture(scope="module")
def factorised_module(module):
    """The trained module's configuration with the factorised decoder (per-voice decoders, no free
    bits) and the trained module's encoders; the rest untrained, which the tasks' plumbing (what the
    model is shown, what it decodes) does not need."""
    torch.manual_seed(0)
    config = apply_overrides(module.config, {"model.measure_decoder": "factorised", "loss.free_bits": 0.0})
    factorised = RMVAEModule(config.to_dict(), dict(module.hparams["encoding_info"]))
    factorised.model.encoders.load_state_dict(module.model.encoders.state_dict())
    return factorised.eval()


@pytest.mark.parametrize("decoder", ["writer", "factorised"])  # the trained default, the factorised one
@pytest.mark.parametrize("n_seed", [2, 6])  # shorter than the window (left-padded) and longer
def test_complete_shows_the_model_the_training_window(request, datamodule, n_seed, decoder):
    """The first new measure is predicted from what the data module's own window for it holds."""
    module = request.getfixturevalue("module" if decoder == "writer" else "factorised_module")
    assert (module.model.writer is not None) == (decoder == "writer")
    dataset = datamodule.datasets["test"]
    encoded = max(datamodule.pieces["test"], key=lambda p: len(p.tokens))
    piece_index = datamodule.pieces["test"].index(encoded)
    (index,) = np.flatnonzero((dataset.windows[:, 0] == piece_index) & (dataset.windows[:, 1] == n_seed))
    item = dataset[int(index)]
    with model_calls(module.model) as (expected_calls, expected_latents), torch.inference_mode():
        output = module.model(item["inputs"][None], item["input_mask"][None], sample=False, reconstruct=False)
        if module.model.writer is not None:  # greedy writing after the window (Composer's default sampling)
            expected = module.model.write(output.target_z, output.state, output.target_context)[0].numpy()
        else:
            expected = module.model.decode_tokens(output.prediction)[0].numpy()
        expected_states = list(module.model.decode_states)
    seed = encoded.tokens[:n_seed].astype(np.int64)
    with model_calls(module.model) as (calls, latents):
        result = Composer(module).complete(Piece(seed, np.zeros(seed.shape[:2], dtype=bool)), 1)
        states = list(module.model.decode_states)
    assert_same_calls(calls, expected_calls)
    # The decoders read the same latent and, with decoder context, the same temporal state.
    assert len(latents) == len(expected_latents) == len(states) == len(expected_states) == 1
    assert torch.equal(latents[0], expected_latents[0])
    assert (states[0] is None and expected_states[0] is None) or torch.equal(states[0], expected_states[0])
    if module.config.model.decoder_context:
        assert all(state is not None for state in states)
    assert int(item["input_mask"][:, 0].sum()) == min(n_seed, WINDOW)
    np.testing.assert_array_equal(result.measures[n_seed], expected)


# --- inpaint and masks -----------------------------------------------------------------------


def test_inpaint_changes_only_the_masked_voice_measures(module, chorale):
    mask = parse_mask("1:0;3-4:1,2;7:all", chorale.n_measures, N_VOICES)
    with model_calls(module.model) as (calls, _):
        result = Composer(module).inpaint(chorale, mask)
    np.testing.assert_array_equal(result.measures[~mask], chorale.measures[~mask])
    np.testing.assert_array_equal(result.generated, mask)
    assert not np.array_equal(result.measures[mask], chorale.measures[mask])
    assert len(calls) == 4  # one prediction per measure with something to regenerate: 1, 3, 4, 7
    # ...each conditioned on the voices kept in its measure (none in measure 7: a pure prediction).
    assert [None if c[3] is None else c[3].tolist() for c in calls] == [
        [[False, True, True, True]], [[True, False, False, True]], [[True, False, False, True]], None]
    # What is hidden is never shown to the model: random content there changes nothing it sees.
    noisy = Piece(scrambled(chorale.measures, mask, module.pitch_range.n_classes), chorale.generated)
    with model_calls(module.model) as (noisy_calls, _):
        noisy_result = Composer(module).inpaint(noisy, mask)
    np.testing.assert_array_equal(noisy_result.measures, result.measures)
    assert_same_calls(calls, noisy_calls)


def test_inpaint_refuses_masks_that_hide_everything_or_nothing(module, chorale):
    shape = (chorale.n_measures, N_VOICES)
    with pytest.raises(TaskError, match="hides every voice of every measure.*--task noise"):
        Composer(module).inpaint(chorale, np.ones(shape, dtype=bool))
    with pytest.raises(TaskError, match="selects nothing"):
        Composer(module).inpaint(chorale, np.zeros(shape, dtype=bool))
    with pytest.raises(TaskError, match="mask covers 3×4.*8×4"):
        Composer(module).inpaint(chorale, np.ones((3, N_VOICES), dtype=bool))


def test_parse_mask_reads_measure_and_voice_ranges():
    expected = np.array([[False, False, False, False],
                         [False, False, False, False],
                         [False, True, True, False],  # measure 3
                         [False, True, True, False],  # measure 4
                         [False, False, False, False],
                         [False, False, False, False],
                         [True, True, True, True],  # measure 7
                         [False, False, False, False]])
    np.testing.assert_array_equal(parse_mask("3-4:1,2;7:all", 8, 4), expected)
    np.testing.assert_array_equal(parse_mask(" 3-4 : 1, 2 ; 7:all ;", 8, 4), expected)
    np.testing.assert_array_equal(parse_mask("all:3", 3, 4), np.array([[False, False, False, True]] * 3))


@pytest.mark.parametrize("spec, message", [
    ("3-4", r"mask item '3-4' must be MEASURES:VOICES"),
    ("x:1", r"cannot read measure range 'x'; use N, N-M or all"),
    ("2:bass", r"cannot read voice range 'bass'"),
    ("9:1", r"measure range '9' is outside 1–8"),
    ("0:1", r"measure range '0' is outside 1–8"),
    ("2:4", r"voice range '4' is outside 0–3"),
    ("5-3:1", r"measure range '5-3' runs backwards"),
])
def test_parse_mask_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(TaskError, match=message):
        parse_mask(spec, 8, 4)


# --- sampling ----------------------------------------------------------------------------------


def test_greedy_is_deterministic_and_seeded_sampling_is_reproducible(module, chorale):
    greedy = [Composer(module).complete(chorale, 2).measures for _ in range(2)]
    np.testing.assert_array_equal(*greedy)
    sampled = [Composer(module, Sampling(temperature=1.0, seed=seed)).complete(chorale, 2).measures
               for seed in (3, 3, 4)]
    np.testing.assert_array_equal(sampled[0], sampled[1])
    assert not np.array_equal(sampled[0], sampled[2])
    top1 = Composer(module, Sampling(temperature=1.0, top_k=1, seed=5)).complete(chorale, 2).measures
    assert ((top1 >= 0) & (top1 < module.pitch_range.n_classes)).all()


def test_sampling_settings_are_checked():
    with pytest.raises(TaskError, match="temperature"):
        Sampling(temperature=-1.0)
    with pytest.raises(TaskError, match="top-k"):
        Sampling(temperature=1.0, top_k=0)


# --- noise and interpolation -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "uniform", "binomial"])
def test_noise_seeds_then_completes(module, kind):
    result = Composer(module, Sampling(seed=1)).noise(kind, 2, 3)
    assert result.measures.shape == (5, N_VOICES, STEPS_PER_MEASURE)
    np.testing.assert_array_equal(result.generated, np.repeat([[False]] * 2 + [[True]] * 3, N_VOICES, axis=1))
    assert ((result.measures >= 0) & (result.measures < module.pitch_range.n_classes)).all()
    again = Composer(module, Sampling(seed=1)).noise(kind, 2, 3)
    np.testing.assert_array_equal(again.measures, result.measures)
    if kind == "binomial":  # every seed measure starts with a note
        assert (result.measures[:2, :, 0] < module.pitch_range.n_pitches).all()


def test_unknown_noise_kind(module):
    with pytest.raises(TaskError, match="unknown noise kind 'pink'"):
        Composer(module).noise("pink", 2, 2)


@pytest.fixture(scope="module")
def thesis_module(module):
    """A module of the thesis design (profiles.THESIS_DESIGN: temporal LSTM over sampled latents,
    PoE/RPoE posteriors with N(0, I), z-only decoders) on the trained module's data settings and
    pitch range. Its voice encoders are the trained module's own (the encoder kind is kept, so
    they fit), so that pieces are told apart; the rest is untrained, which interpolation does not
    need to be checked against the model's own forward pass."""
    torch.manual_seed(0)
    design = {key: value for key, value in THESIS_DESIGN.items() if key != "model.encoder"}
    thesis = RMVAEModule(apply_overrides(module.config, design).to_dict(), dict(module.hparams["encoding_info"]))
    thesis.model.encoders.load_state_dict(module.model.encoders.state_dict())
    return thesis.eval()


@pytest.mark.parametrize("design", ["default", "factorised", "thesis"])
def test_interpolation_blends_the_pieces_posterior_means(request, design, chorale, other_chorale):
    """The default (a window writer, trained), the same with the factorised decoder, and the thesis's design."""
    module = request.getfixturevalue({"default": "module", "factorised": "factorised_module",
                                      "thesis": "thesis_module"}[design])
    model = module.model
    with model_calls(model) as (_, latents):
        result = Composer(module).interpolate(chorale, other_chorale, n_measures=3, n_points=4)
        (states,) = model.decode_states
    assert result.measures.shape == (12, N_VOICES, STEPS_PER_MEASURE) and result.generated.all()
    assert result.key_shift == chorale.key_shift
    # Independent path: the full forward pass gives each input measure's posterior mean and decodes it.
    ends = []
    for piece in (chorale, other_chorale):
        inputs = torch.from_numpy(piece.measures[:3])[None]
        with torch.inference_mode():
            output = model(inputs, torch.ones((1, 3, N_VOICES), dtype=torch.bool), sample=False)
            ends.append((output.post_mu[0], model.decode_tokens(output.recon)[0].numpy()))
    (mu_a, tokens_a), (mu_b, tokens_b) = ends
    assert (mu_a - mu_b).abs().max() > 1e-2  # the two pieces are told apart
    (decoded,) = latents
    for block, alpha in enumerate(np.linspace(0, 1, 4)):
        torch.testing.assert_close(decoded[3 * block:3 * block + 3], mu_a + float(alpha) * (mu_b - mu_a))
    if design == "thesis":  # decoders read z alone: alpha = 0 and 1 are the pieces' own decodings
        np.testing.assert_array_equal(result.measures[:3], tokens_a)
        np.testing.assert_array_equal(result.measures[9:], tokens_b)
        return
    # Default design: the decoders also read the temporal state. The blends stand alone: every
    # one is decoded with the empty (zero) state...
    assert states is not None and states.shape == (12, model.state_size) and not states.any()
    if model.writer is not None:
        # ...and a writer writes each one after nothing, greedily (a measure its own teacher-forced
        # scores would not have chosen token by token is not that).
        assert_greedy_writing(model, decoded, states, result.measures)
        return
    # ...which is what the forward pass gives each piece's first measure, so that measure is the
    # piece's own decoding...
    np.testing.assert_array_equal(result.measures[0], tokens_a[0])
    np.testing.assert_array_equal(result.measures[9], tokens_b[0])
    # ...and every measure at alpha = 0 and 1 is the piece's posterior mean decoded without context.
    with torch.inference_mode():
        alone = torch.zeros(3, model.state_size)
        np.testing.assert_array_equal(result.measures[:3], model.decode_tokens(model.decode(mu_a, alone)).numpy())
        np.testing.assert_array_equal(result.measures[9:], model.decode_tokens(model.decode(mu_b, alone)).numpy())


def test_each_task_gets_its_default_decoding():
    from types import SimpleNamespace

    from rmvae.tasks import TASK_DECODING, WRITER_DECODING, Sampling, default_sampling

    writer = SimpleNamespace(config=SimpleNamespace(model=SimpleNamespace(writes=True)))
    factorised = SimpleNamespace(config=SimpleNamespace(model=SimpleNamespace(writes=False)))
    harmonize = default_sampling(writer, seed=3, task="harmonize")
    assert harmonize.seed == 3 and harmonize.dissonance_penalty == TASK_DECODING["harmonize"].dissonance_penalty > 0
    assert harmonize.temperature == WRITER_DECODING.temperature and harmonize.no_parallels
    assert default_sampling(writer, seed=3, task="complete") == replace(WRITER_DECODING, seed=3)
    assert default_sampling(factorised, seed=3, task="harmonize") == Sampling(seed=3)  # greedy
