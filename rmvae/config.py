"""Typed configuration: the one source of truth for every default.

A run is described by a :class:`Config` holding four frozen dataclasses. Variants are
made with :func:`dataclasses.replace` or with dotted overrides (``model.z_dim=64``)
through :func:`apply_overrides`; an unknown key is an error that lists the valid ones.
Configs travel as plain dicts (``to_dict``/``from_dict``) so checkpoints load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

STEPS_PER_MEASURE = 16  # sixteenth notes in one 4/4 measure (docs/design.md §1.2)
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says which and what is allowed."""


# Size presets follow the thesis's RNN configurations (docs/design.md §2.7). Widths are
# multiplied by ModelConfig.width_scale so the quick profile can shrink them together.
# ``writer_width``: the hidden size of the measure writer (the autoregressive decoder) and of
# the autoregressive baseline, which stacks ``BASELINE_WRITER_LAYERS`` of them over the window.
SIZES: dict[str, dict[str, Any]] = {
    "small": dict(frame_fc=(48, 32, 32), note_lstm=(64, 64), measure_fc=(64, 128),
                  temporal_layers=2, temporal_width=64, writer_width=256),
    "medium": dict(frame_fc=(64, 48, 32, 48), note_lstm=(128, 128), measure_fc=(256, 256),
                   temporal_layers=2, temporal_width=128, writer_width=384),
    "big": dict(frame_fc=(64, 48, 48, 48, 64), note_lstm=(256, 256), measure_fc=(256, 256, 256),
                temporal_layers=3, temporal_width=256, writer_width=512),
}
# The baseline's writer carries the whole past in its state (no encoders, no temporal model):
# two layers, as the autoregressive LSTMs of the BachBot / DeepBach family.
BASELINE_WRITER_LAYERS = 2


# The valid values of each choice field, in the order the command line lists them: the
# ``__post_init__`` checks and the CLI's ``choices=`` both read these, so they cannot disagree.
ENCODINGS = ("mono", "poly")
TIME_SIGNATURES = ("4/4", "2/2")
OFFSETS = (1, 2)
MODEL_KINDS = ("rmvae", "direct", "autoregressive")
MEASURE_DECODERS = ("factorised", "autoregressive")
WRITER_CONTEXTS = ("window", "measure")
ENCODERS = ("fc", "conv", "rnn")
TEMPORAL_INPUTS = ("experts", "latents")
LATENT_PRIORS = ("temporal", "standard")
ELBO_TERMS = ("subsampled", "full")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")


def _check_choices(section: str, values: Any, choices: dict[str, Any]) -> None:
    """Each named field of ``values`` (a config section) must be one of its valid values; the first
    that is not is a ConfigError naming the field and what it may be."""
    for name, valid in choices.items():
        value = getattr(values, name)
        if value not in valid:
            raise ConfigError(f"{section}.{name}={value!r} is not valid; choose one of {sorted(valid)}")


@dataclass(frozen=True)
class DataConfig:
    """What music is read and how it is cut into training windows."""

    source: str = "bach"  # "bach" (music21's chorales) or a folder of MIDI files
    n_voices: int = 4
    time_signature: str = "4/4"  # pieces in any other signature are skipped with a reason
    transpose: bool = True  # to C major / A minor, shift remembered per piece
    pickup_beats: float = 0.0  # MIDI sources only: length of the anacrusis in quarter notes
    encoding: str = "mono"  # "mono" (pitches+rest+hold) or "poly" (activation+duration)
    n_measures: int = 8  # input window length, in measures
    offset: int = 1  # target measure = last input measure + offset (2 for the band player)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test share of pieces
    seed: int = 0  # seed of the split by piece (independent of the training seed)
    max_pieces: int | None = None  # train on a subset (quick profile); val/test stay whole
    pitch_range: tuple[int, int] | None = None  # MIDI [low, high]; None = from training data
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self):
        _check_choices("data", self, dict(encoding=ENCODINGS, time_signature=TIME_SIGNATURES, offset=OFFSETS))
        if self.n_voices < 1:
            raise ConfigError("data.n_voices must be at least 1")
        if self.n_measures < 1:
            raise ConfigError("data.n_measures must be at least 1")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or min(self.split) < 0:
            raise ConfigError(f"data.split={self.split} must be three non-negative shares summing to 1")
        if self.pitch_range is not None and not (0 <= self.pitch_range[0] < self.pitch_range[1] <= 127):
            raise ConfigError(f"data.pitch_range={self.pitch_range} must be [low, high] MIDI numbers, low < high")

    def parse_key(self) -> dict[str, Any]:
        """The fields that change how files are parsed (the cache key)."""
        return dict(source=self.source, n_voices=self.n_voices, time_signature=self.time_signature,
                    transpose=self.transpose, pickup_beats=self.pickup_beats)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the RMVAE (docs/design.md §2)."""

    # "rmvae": the latent-variable model; "direct": the same encoders, temporal LSTM and
    # decoders with no latent at all (the decoder reads the temporal state), trained on the
    # next-measure NLL alone: the baseline that says what the latents add; "autoregressive": no
    # encoders and no latent, a measure writer (rmvae.model.writer) run over the whole window's
    # tokens, trained on every token of the window: the model a user of the field picks instead.
    kind: str = "rmvae"
    # How a measure's tokens are predicted from z and the temporal state: "factorised", every
    # voice and step independently (the thesis's per-voice decoders, model.encoder's kind), or
    # "autoregressive", one token at a time by the chain rule (rmvae.model.writer; mono only): the
    # default, 19 nats per measure better than the factorised one at the `cpu` budget
    # (docs/results.md, "The measure decoder").
    measure_decoder: str = "autoregressive"
    # What the writer has heard before a measure: "window", the whole window token by token (it
    # runs on over the input measures, each with its own z and temporal state; rmvae.model.writing),
    # or "measure", only the measure before (each measure starts from a zero state).
    writer_context: str = "window"
    # Measure writer: embedding size of one voice's token, dropout of its LSTM's inputs and outputs
    # (0.25: at 0.1 the autoregressive baseline overfits the cpu profile's training split after
    # ≈ 420 steps, validation NLL 33.3 → 34.0 by step 476), and the share of its earlier-step inputs
    # replaced by the unknown token in training (word dropout).
    writer_embed: int = 16
    writer_dropout: float = 0.25
    writer_token_dropout: float = 0.0
    size: str = "medium"
    # Per-voice encoders and decoders: "fc" (the flattened measure through FC layers), "conv"
    # (5×5 convolutions) or "rnn" (FC → BiLSTM → FC, the thesis's).
    encoder: str = "fc"
    z_dim: int = 32
    width_scale: float = 1.0  # multiplies every preset width (quick profile shrinks models)
    # What the temporal LSTM reads per measure: "experts", every voice's expert mean side by side
    # (deterministic, so the KL cannot shut the path from the past to the prediction), or
    # "latents", a sample of the measure's PoE posterior (the thesis's).
    temporal_input: str = "experts"
    # Each measure's posterior: "temporal", the product of the temporal model's prediction
    # (from the measures before it) and its voice experts, KL taken against that prediction
    # (a VRNN, Chung et al. 2015); "standard", the PoE/RPoE of the experts with N(0, I), KL
    # against N(0, I) (the thesis's).
    latent_prior: str = "temporal"
    decoder_context: bool = True  # the decoders also read the temporal state (thesis: z only)
    # The posterior of measure t is the prior expert of measure t+1, so N(0, I) enters once
    # (latent_prior="standard" only; docs/design.md §2.3).
    rpoe: bool = True
    dropout_fc: float = 1e-2
    dropout_rnn: float = 1e-3

    def __post_init__(self):
        _check_choices("model", self, dict(kind=MODEL_KINDS, measure_decoder=MEASURE_DECODERS,
                                           writer_context=WRITER_CONTEXTS))
        if not 0 <= self.writer_token_dropout < 1 or not 0 <= self.writer_dropout < 1:
            raise ConfigError("model.writer_dropout and model.writer_token_dropout must be in [0, 1)")
        _check_choices("model", self, dict(size=set(SIZES), encoder=ENCODERS, temporal_input=TEMPORAL_INPUTS,
                                           latent_prior=LATENT_PRIORS))
        if self.z_dim < 1 or self.width_scale <= 0:
            raise ConfigError("model.z_dim must be ≥ 1 and model.width_scale > 0")
        if self.latent_prior == "temporal" and self.temporal_input == "latents":
            raise ConfigError("model.latent_prior='temporal' needs model.temporal_input='experts' (a prior "
                              "predicted from sampled latents would make every measure wait for the one before); "
                              "use model.latent_prior='standard' with temporal_input='latents' (the thesis design)")
        if self.kind == "direct" and (self.temporal_input != "experts" or not self.decoder_context):
            raise ConfigError("model.kind='direct' has no latents: it needs model.temporal_input='experts' "
                              "and model.decoder_context=true")

    def layers(self) -> dict[str, Any]:
        """Layer widths of the preset, scaled by ``width_scale`` (at least 4 units each)."""
        preset = SIZES[self.size]

        def scale(width: int) -> int:
            return max(4, int(round(width * self.width_scale)))

        return dict(frame_fc=tuple(scale(w) for w in preset["frame_fc"]),
                    note_lstm=tuple(scale(w) for w in preset["note_lstm"]),
                    measure_fc=tuple(scale(w) for w in preset["measure_fc"]),
                    temporal_layers=preset["temporal_layers"],
                    temporal_width=scale(preset["temporal_width"]),
                    writer_width=scale(preset["writer_width"]))

    @property
    def writes(self) -> bool:
        """The measures are written token by token (the autoregressive decoder or baseline)."""
        return self.kind == "autoregressive" or self.measure_decoder == "autoregressive"


@dataclass(frozen=True)
class LossConfig:
    """Training objective (docs/design.md §3): sub-sampled ELBO, KL annealing, music losses."""

    n_subsets: int = 2  # k random voice subsets in the sub-sampled ELBO
    recon_inputs: bool = True  # also reconstruct every input measure from its own z_t
    # Decode only this many randomly chosen input measures per window in training (0 = all T),
    # their sum scaled by T/k: an unbiased estimate of reconstructing every measure at about
    # (k+1)/(T+1) of the decoder's cost (benchmarks/train_throughput.py). Validation decodes all.
    recon_inputs_measures: int = 0
    kl_start: float = 0.01  # β = 0 until this share of training...
    kl_end: float = 0.4  # ...then rises linearly to 1 at this share
    # The full-set term's target latent: inferred from the target itself (the PoE of the
    # temporal prediction and every target voice's expert, KL against the prediction: an ELBO
    # of the next measure) or, False, drawn from the prediction alone (the thesis's).
    target_posterior: bool = True
    # Which ELBO terms train: "subsampled", the full set, each voice alone and n_subsets random
    # subsets (the thesis's); "full", the full-set term only (a plain sequential VAE: what the
    # multimodal terms cost per step, and an arm for what they add).
    elbo_terms: str = "subsampled"
    # Importance samples of the next-measure NLL estimate (val/nll, test/nll) that selects
    # checkpoints and compares arms with the baselines (Burda et al. 2016).
    nll_samples: int = 16
    # Nats per latent dimension of each input measure (batch mean) the KL does not penalise
    # (free bits, Kingma et al. 2016); 0 = off, the thesis's objective. 0.25: without it the
    # autoregressive measure decoder learns to ignore z (no active unit at the `cpu` budget).
    free_bits: float = 0.25
    # The music losses (docs/design.md §3.5): each weight is its term's only switch, 0 = off (the
    # term is not computed for the objective; its value is still logged).
    scale_weight: float = 0.1
    rhythm_weight: float = 0.01
    # Semitone, tone, tritone. 0.3 each (≈ 9 % of the ELBO's gradient): the weight at which the
    # `cpu` harmony_weight grid measured an effect on continuations at no detectable NLL cost;
    # the thesis's 0.01 (≈ 0.3 %) changes nothing measurable (docs/results.md, "Music-loss weights").
    harmony_weights: tuple[float, float, float] = (0.3, 0.3, 0.3)

    def __post_init__(self):
        if not 0 <= self.kl_start <= self.kl_end <= 1:
            raise ConfigError(f"loss.kl_start={self.kl_start}, loss.kl_end={self.kl_end}: need 0 ≤ start ≤ end ≤ 1")
        if self.n_subsets < 0:
            raise ConfigError("loss.n_subsets must be ≥ 0")
        if self.nll_samples < 1:
            raise ConfigError("loss.nll_samples must be ≥ 1")
        _check_choices("loss", self, dict(elbo_terms=ELBO_TERMS))
        if self.free_bits < 0:
            raise ConfigError("loss.free_bits must be ≥ 0 (0 = off)")
        if self.recon_inputs_measures < 0:
            raise ConfigError("loss.recon_inputs_measures must be ≥ 0 (0 = reconstruct all input measures)")
        if len(self.harmony_weights) != 3:
            raise ConfigError("loss.harmony_weights needs three weights: semitone, tone, tritone")
        if min(self.scale_weight, self.rhythm_weight, *self.harmony_weights) < 0:
            raise ConfigError("loss.scale_weight, loss.rhythm_weight and loss.harmony_weights must be ≥ 0 (0 = off)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and hardware. The same module runs on CPU, one GPU or DDP."""

    max_epochs: int = 50
    max_steps: int = -1  # > 0 overrides max_epochs
    # 3e-3: in the cpu profile the default design reaches at step ≈ 600 the validation NLL that
    # 1e-3 (the thesis's) reaches at its last step, 1484, and ends ≈ 1 nat lower; 5e-3 is no
    # faster (docs/experiments.md, "Learning rate and augmentation").
    lr: float = 3e-3
    lr_decay: float = 0.98  # ExponentialLR gamma, per epoch
    grad_clip: float = 1.0
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    wandb: bool = True
    wandb_project: str = "rmvae"
    wandb_group: str | None = None
    wandb_name: str | None = None
    wandb_tags: tuple[str, ...] = ()
    deterministic: bool = True
    limit_val_batches: float = 1.0
    val_every_n_epochs: int = 1  # validation (and checkpoint selection) every this many epochs
    log_every_n_steps: int = 10

    def __post_init__(self):
        _check_choices("train", self, dict(precision=PRECISIONS))
        if self.val_every_n_epochs < 1:
            raise ConfigError("train.val_every_n_epochs must be ≥ 1")
        if self.max_epochs < 1 and self.max_steps <= 0:
            raise ConfigError("set train.max_epochs ≥ 1 or train.max_steps > 0")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.model.writes and self.data.encoding != "mono":
            raise ConfigError("a model that writes tokens one at a time (model.kind=autoregressive or "
                              "model.measure_decoder=autoregressive) needs data.encoding=mono; set "
                              "model.measure_decoder=factorised and model.kind=rmvae for the poly encoding")
        if (self.model.measure_decoder == "autoregressive" and self.model.writer_context == "window"
                and self.data.offset != 1):
            raise ConfigError("model.writer_context=window writes the measure right after the window; with "
                              "data.offset=2 (the band player's) set model.writer_context=measure")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples → lists, plain types only

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Config":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; valid: {sorted(sections)}")
        built = {}
        for f in dataclasses.fields(cls):
            section_cls = _SECTION_CLASSES[f.name]
            built[f.name] = _build_section(section_cls, f.name, raw.get(f.name, {}))
        return cls(**built)

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> "Config":
        """The config of a checkpoint or run folder written by any version (:func:`upgrade_stored`)."""
        return cls.from_dict(upgrade_stored(raw))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Fields added after checkpoints were first written, with the value that reproduces what a
# checkpoint without them computed: a stored config lacking one meant that value, not today's
# default (otherwise an older checkpoint would build a different model and fail to load).
ADDED_FIELDS: dict[str, Any] = {
    "loss.elbo_terms": "subsampled",
    "model.measure_decoder": "factorised",
    "model.writer_context": "measure",
}

# Fields that older versions stored and this one no longer has, with the one value whose
# behaviour this version computes: a stored config holding that value reads as today's config,
# any other value is refused (this version cannot rebuild what it trained).
REMOVED_FIELDS: dict[str, Any] = {
    "model.skip_last_measure": False,  # no skip of the last measure's experts around the temporal LSTM
    "model.rpoe_readd_prior": False,  # RPoE: N(0, I) enters once, at the first measure
    "loss.subset_inputs": "subset",  # a subset term reads only the subset's voices of the past
    "loss.recon_inputs_weight": 1.0,  # the input measures' reconstruction enters the ELBO unweighted
}

# Music-loss switches that older versions stored beside the weight: false meant the term was
# off, which is now the weight 0 (every interval's, for harmony); true left the weight in charge.
REMOVED_SWITCHES: dict[str, tuple[str, Any]] = {
    "loss.scale": ("loss.scale_weight", 0.0),
    "loss.rhythm": ("loss.rhythm_weight", 0.0),
    "loss.harmony": ("loss.harmony_weights", [0.0, 0.0, 0.0]),
}


def upgrade_stored(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored config dict (``Config.to_dict()`` of any version) in this version's terms: the
    :data:`ADDED_FIELDS` it lacks set to their old values, the :data:`REMOVED_FIELDS` dropped and
    the :data:`REMOVED_SWITCHES` turned into weights; a current dict comes back unchanged.

    Raises:
        ConfigError: a removed field holds a value whose behaviour this version no longer has.
    """
    stored = {section: dict(values) if isinstance(values, dict) else values for section, values in raw.items()}

    def section_of(key: str) -> tuple[dict[str, Any] | None, str]:
        section, name = key.split(".")
        values = stored.get(section)
        return (values if isinstance(values, dict) else None), name

    for key, value in ADDED_FIELDS.items():
        values, name = section_of(key)
        if values is not None and name not in values:
            values[name] = value
    for key, kept in REMOVED_FIELDS.items():
        values, name = section_of(key)
        value = values.pop(name, kept) if values is not None else kept
        if value != kept:
            raise ConfigError(f"{key}={value!r}: this version of rmvae no longer supports it (it always "
                              f"computes what {key}={kept!r} did); load or resume this run with a version that "
                              f"has {key}")
    for key, (weight_key, off) in REMOVED_SWITCHES.items():
        values, name = section_of(key)
        if values is not None and name in values and not _coerce(values.pop(name), bool, key):
            values[weight_key.split(".")[1]] = off
    return stored


_SECTION_CLASSES = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a JSON or command-line value into the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[]").split(",") if v.strip()]
        item_type = args[0] if args else str
        return tuple(_coerce(v, item_type, key) for v in value)
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes", "on"}:
                    return True
                if value.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a valid {getattr(annotation, '__name__', annotation)}") from None
    return value


def _build_section(section_cls, section: str, raw: dict[str, Any]):
    hints = typing.get_type_hints(section_cls)
    valid = {f.name for f in dataclasses.fields(section_cls)}
    unknown = set(raw) - valid
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(f'{section}.{k}' for k in unknown)}; "
                          f"valid keys of '{section}': {sorted(valid)}")
    return section_cls(**{k: _coerce(v, hints[k], f"{section}.{k}") for k, v in raw.items()})


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["model.z_dim=64", …]`` → ``{"model.z_dim": "64", …}`` (values are coerced later)."""
    pairs = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. model.z_dim=64)")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


def apply_overrides(config: Config, overrides: dict[str, Any] | list[str]) -> Config:
    """Apply dotted overrides, ``{"model.z_dim": 64}`` or ``["model.z_dim=64"]``.

    Raises:
        ConfigError: a key is not ``section.field`` of the config, or a value has the wrong type.
    """
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(overrides)
    raw = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in raw or not name:
            raise ConfigError(f"override key {key!r} is not section.key; sections: {sorted(raw)}")
        if name not in raw[section]:
            raise ConfigError(f"unknown key {key!r}; valid keys of '{section}': {sorted(raw[section])}")
        raw[section][name] = value
    return Config.from_dict(raw)
