"""Experiment grids as data (docs/design.md §7.2): grid → arm → dotted config overrides.

Every run of a grid is built the same way, one layer after the other:

    Config() defaults → BASELINE → PROFILES[profile] → user ``--set`` overrides
    → the arm's overrides → seed (``train.seed``) → runtime (devices, W&B labels)

so arms differ only in the keys they name, and every arm has the same data split
(``data.seed``, ``data.split``, ``data.max_pieces``) and the same training budget
(``train.max_steps``/``train.max_epochs``, ``data.batch_size``). A run's id is a short hash
of its resolved config (seed included, W&B labels excluded: they name a run, they do not
change what it computes), so the same experiment always lands in the same folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations import runfolder
from rmvae.config import Config, ConfigError, apply_overrides, parse_overrides
from rmvae.profiles import PROFILES  # noqa: F401  (re-exported: the grids' profiles are the training profiles)
from rmvae.profiles import THESIS_DESIGN, profile_overrides

# Bump when the meaning of a grid, the baseline or a profile changes: output folders made
# by another version are refused (grid.json) instead of silently mixed.
# 3: every grid also trains the autoregressive baseline; the decoder grid.
# 4: the autoregressive measure decoder with free bits is the baseline; the cpu profile's 636 steps.
# 5: a music loss is off at weight 0 (no on/off switches); unused options removed, so run ids change.
GRID_VERSION = 5

DEFAULT_SEEDS = 3  # seeds 0, 1, 2 → train.seed; at least 3 (docs/design.md §7.3)
BASELINE_ARM = "baseline"  # name of the shared arm in the `all` grid

# The default configuration every grid varies one factor of (docs/design.md §7.1). Stated explicitly
# so that a change of Config defaults cannot silently move the baseline.
BASELINE: dict[str, Any] = {
    "data.encoding": "mono",
    "model.kind": "rmvae",
    "model.encoder": "fc",
    "model.temporal_input": "experts",
    "model.latent_prior": "temporal",
    "model.decoder_context": True,
    "model.measure_decoder": "autoregressive",
    "model.writer_context": "window",
    "loss.free_bits": 0.25,
    "loss.target_posterior": True,
    "data.transpose": True,
    "model.size": "medium",
    "model.rpoe": True,
    "loss.scale_weight": 0.1,
    "loss.rhythm_weight": 0.01,
    "loss.harmony_weights": (0.3, 0.3, 0.3),
    "data.n_measures": 8,
    "data.offset": 1,
    "loss.elbo_terms": "subsampled",
    "train.lr": 3e-3,
}

# Keys that make runs comparable: the data split and the training budget. Arms may not set
# them (checked below); a user `--set` of one of them applies to every arm alike.
SHARED_KEYS = ("data.seed", "data.split", "data.max_pieces", "data.batch_size",
               "train.max_steps", "train.max_epochs", "train.lr", "train.devices")

# The thesis's design as an arm: its model and objective; its learning rate is a budget key
# that every arm of a grid shares (to reproduce the thesis's own run: `--set train.lr=1e-3`).
THESIS_ARM = {key: value for key, value in THESIS_DESIGN.items() if key not in SHARED_KEYS}

# grid → arm → overrides. Arm names are unique across grids so that `all` is a plain union.
GRIDS: dict[str, dict[str, dict[str, Any]]] = {
    "transpose": {
        "transposed": {"data.transpose": True},  # every piece in C major / A minor
        "raw": {"data.transpose": False},  # pieces in their written keys
    },
    "size": {
        "small": {"model.size": "small"},
        "medium": {"model.size": "medium"},
        "big": {"model.size": "big"},
    },
    # A music loss is off at weight 0; "on" states the baseline's weights, so the arm is the baseline.
    "scale_rhythm": {
        "scale_rhythm_on": {key: BASELINE[key] for key in ("loss.scale_weight", "loss.rhythm_weight")},
        "scale_rhythm_off": {"loss.scale_weight": 0.0, "loss.rhythm_weight": 0.0},
    },
    "harmony": {
        "harmony_on": {"loss.harmony_weights": BASELINE["loss.harmony_weights"]},
        "harmony_off": {"loss.harmony_weights": (0.0, 0.0, 0.0)},
    },
    "rpoe": {  # RPoE is a form of the N(0, I)-prior posterior; the default's temporal prior replaces it
        "temporal_prior": {"model.latent_prior": "temporal"},
        "rpoe_on": {"model.latent_prior": "standard", "model.rpoe": True},
        "rpoe_off": {"model.latent_prior": "standard", "model.rpoe": False},
    },
    "objective": {  # the default design against the thesis's (docs/design.md §2.8)
        "default_design": {key: BASELINE[key] for key in THESIS_ARM},
        # the thesis's objective and temporal model on the default's FC encoders: what the objective does
        "thesis_objective": {**THESIS_ARM, "model.encoder": BASELINE["model.encoder"]},
        "thesis_design": dict(THESIS_ARM),  # exactly the thesis's model (RNN encoders)
    },
    # How a measure's tokens are predicted from z and the temporal state. Every arm names the decoder and
    # the free bits, so that a change of the default cannot change them. The `autoregressive` arm equals
    # BASELINE, so it is the reference and the report's differences are each arm − the default.
    "decoder": {
        "factorised": {"model.measure_decoder": "factorised", "loss.free_bits": 0.0},
        # token by token (rmvae.model.writer) with free bits: the default
        "autoregressive": {"model.measure_decoder": "autoregressive", "loss.free_bits": 0.25},
        # the same without free bits: does the latent survive a decoder that can do without it?
        "autoregressive_no_free_bits": {"model.measure_decoder": "autoregressive", "loss.free_bits": 0.0},
    },
}

# Dose-response grids: the weight of one music term, from 0 to where it dominates. Each weight
# multiplies every interval of the harmony term (semitone, tone, tritone) or the scale term; the
# values are chosen from the measured gradient share of the term (benchmarks/music_loss_share.py,
# docs/results.md, "Music-loss weights"). The on/off grids above use the default weights. Harmony stops at 3
# (a gradient as large as the ELBO's): at 10 the cpu grid's music collapsed (one seed in unisons).
DOSE_WEIGHTS: dict[str, tuple[str, tuple[float, ...]]] = {
    "harmony_weight": ("harmony", (0.0, 0.03, 0.3, 1.0, 3.0)),
    "scale_weight": ("scale", (0.0, 0.06, 0.6, 2.0, 20.0)),
}


def dose_arm(term: str, weight: float) -> str:
    """The arm of ``weight`` in a dose-response grid: ``harmony_w0.3``."""
    return f"{term}_w{weight:g}"


def _dose_overrides(term: str, weight: float) -> dict[str, Any]:
    if term == "harmony":
        return {"loss.harmony_weights": (weight, weight, weight)}
    return {"loss.scale_weight": weight}


for _grid, (_term, _weights) in DOSE_WEIGHTS.items():
    GRIDS[_grid] = {dose_arm(_term, _weight): _dose_overrides(_term, _weight) for _weight in _weights}

# Trained in every grid beside its arms, same seeds, split and budget, the baselines every arm's
# next-measure NLL is compared with: the direct predictor (the arms' networks without latents: do the
# latents help?, docs/design.md §4.3) and the autoregressive baseline (an LSTM over the window's tokens,
# no latent: what a user of the field would train instead). The baseline's decoder is named so that an
# arm's decoder never leaks into it.
DIRECT_ARM = "direct_predictor"
DIRECT_OVERRIDES: dict[str, Any] = {"model.kind": "direct"}
AUTOREGRESSIVE_ARM = "autoregressive_baseline"
AUTOREGRESSIVE_OVERRIDES: dict[str, Any] = {"model.kind": "autoregressive", "model.measure_decoder": "factorised"}
TRAINED_BASELINES: dict[str, dict[str, Any]] = {DIRECT_ARM: DIRECT_OVERRIDES,
                                                AUTOREGRESSIVE_ARM: AUTOREGRESSIVE_OVERRIDES}
GRID_CHOICES: tuple[str, ...] = (*GRIDS, "all")

# Config fields that label a run but do not change what it computes: left out of the run id.
LABEL_KEYS = ("train.wandb", "train.wandb_project", "train.wandb_group", "train.wandb_name",
              "train.wandb_tags")

for _grid, _arms in GRIDS.items():
    for _arm, _overrides in _arms.items():
        assert not set(_overrides) & set(SHARED_KEYS), f"arm {_grid}/{_arm} changes the budget or split"
    # an arm name may not be reused by another grid (`all` is a union by name)
    assert all(_arm not in _other for _name, _other in GRIDS.items() if _name != _grid for _arm in _arms)
    assert not set(_arms) & {*TRAINED_BASELINES, BASELINE_ARM}, f"grid {_grid} reuses a baseline's arm name"


class GridMismatchError(ConfigError):
    """The output folder holds runs of a different grid definition."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: an arm at one seed, with its fully resolved config."""

    run_id: str
    grid: str
    arm: str
    seed: int
    overrides: dict[str, Any]  # the arm's overrides plus train.seed (what varies inside the grid)
    config: Config

    def run_dir(self, grid_dir: Path) -> Path:
        return runfolder.run_dir(grid_dir, self.run_id)

    def meta(self) -> dict[str, Any]:
        """What ``run.json`` records: enough to place the run in the grid's tables."""
        return dict(run_id=self.run_id, grid=self.grid, arm=self.arm, seed=self.seed,
                    overrides=self.overrides)


@dataclass(frozen=True)
class GridPlan:
    """A grid expanded into runs: arms × seeds over one shared base config."""

    grid: str
    profile: str
    seeds: tuple[int, ...]
    reference: str  # the arm every other arm is compared with (the baseline's arm)
    base_overrides: dict[str, Any]  # BASELINE + profile + user overrides + runtime
    arms: dict[str, dict[str, Any]]  # arm → its overrides on top of the base
    runs: list[RunSpec] = field(default_factory=list)

    def definition(self) -> dict[str, Any]:
        """What ``grid.json`` stores; a later run into the same folder must match it."""
        arm_configs = {}
        for run in self.runs:
            key = experiment_key(run.config)
            key["train"].pop("seed")
            arm_configs[run.arm] = key
        return dict(grid_version=GRID_VERSION, grid=self.grid, profile=self.profile,
                    reference=self.reference, arm_order=list(self.arms),
                    arms={arm: dict(overrides=self.arms[arm], config=arm_configs[arm]) for arm in self.arms})


def experiment_key(config: Config) -> dict[str, Any]:
    """The resolved config without the fields that only label a run (W&B names and tags)."""
    raw = config.to_dict()
    for key in LABEL_KEYS:
        section, name = key.split(".")
        raw[section].pop(name, None)
    return raw


def run_id(config: Config) -> str:
    """A short stable id of a run: the first 10 hex digits of the sha1 of its experiment key."""
    text = json.dumps(experiment_key(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def toggle_tags(config: Config, profile: str | None = None) -> tuple[str, ...]:
    """W&B tags naming every ablation toggle of a config, e.g. ``("harmony:on", "size:small")``;
    a music loss is on when its weight is not 0."""
    loss = config.loss
    scale, rhythm = loss.scale_weight > 0, loss.rhythm_weight > 0
    scale_rhythm = _on(scale) if scale == rhythm else f"scale:{_on(scale)},rhythm:{_on(rhythm)}"
    tags = [f"transpose:{_on(config.data.transpose)}", f"size:{config.model.size}",
            f"scale_rhythm:{scale_rhythm}", f"harmony:{_on(any(loss.harmony_weights))}",
            f"rpoe:{_on(config.model.rpoe)}"]
    if profile:
        tags.append(f"profile:{profile}")
    return tuple(tags)


def _grid_arms(grid: str) -> dict[str, dict[str, Any]]:
    """A grid's arms; ``all`` is the union of the on/off ablations (the dose-response grids,
    five weights each, are run on their own)."""
    if grid == "all":
        return {arm: overrides for name, arms in GRIDS.items() if name not in DOSE_WEIGHTS
                for arm, overrides in arms.items()}
    return dict(GRIDS[grid])


def _dose_reference(grid: str) -> str:
    """A dose-response grid is compared with its weight-0 arm: what the term does at all."""
    term, _ = DOSE_WEIGHTS[grid]
    return dose_arm(term, 0.0)


def expand_grid(grid: str, profile: str = "quick", seeds: int = DEFAULT_SEEDS,
                overrides: dict[str, Any] | list[str] | None = None, devices: int = 1,
                wandb: bool = True) -> GridPlan:
    """Expand a grid into its runs: every arm at seeds ``0..seeds-1``.

    Args:
        grid: one of :data:`GRID_CHOICES`.
        profile: one of :data:`PROFILES` (``quick`` or ``full``).
        seeds: number of training seeds per arm (``train.seed`` = 0, 1, …).
        overrides: extra dotted overrides for every arm (``["train.max_steps=5"]``); a key
            that the grid varies is refused, since it would be overwritten by the arms.
        devices: ``train.devices`` of every run (DDP inside a run when > 1).
        wandb: ``train.wandb`` of every run.

    Returns:
        The plan; in the ``all`` grid the arms whose config equals the baseline are one arm,
        :data:`BASELINE_ARM`.

    Raises:
        ConfigError: unknown grid or profile, fewer than one seed, an override key the config
            does not have or one that the grid varies.
    """
    profile_settings = _checked_profile(grid, profile, seeds, devices)
    user = _as_dict(overrides)
    grid_arms = _grid_arms(grid)
    _check_user_overrides(grid, grid_arms, user)
    base_overrides = {**BASELINE, **profile_settings, **user, "train.devices": devices, "train.wandb": wandb}
    base = apply_overrides(Config(), base_overrides)
    arms, arm_configs, reference = _arms_and_reference(grid, grid_arms, base)
    for arm, arm_overrides in TRAINED_BASELINES.items():
        arms[arm] = dict(arm_overrides)
        arm_configs[arm] = _baseline_config(base, arm, arm_overrides)
    runs = [_run_spec(grid, profile, arm, seed, arms[arm], arm_config)
            for arm, arm_config in arm_configs.items() for seed in range(seeds)]
    _check_equal_budgets(runs)
    return GridPlan(grid=grid, profile=profile, seeds=tuple(range(seeds)), reference=reference,
                    base_overrides=base_overrides, arms=arms, runs=runs)


def _checked_profile(grid: str, profile: str, seeds: int, devices: int) -> dict[str, Any]:
    """The profile's overrides, once the grid, the profile, the seeds and the devices are known
    to be valid (each refused with what would be)."""
    if grid not in GRID_CHOICES:
        raise ConfigError(f"unknown grid {grid!r}; choose one of {', '.join(GRID_CHOICES)}")
    profile_settings = profile_overrides(profile)
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds}); 3 or more give a usable interval")
    if devices < 1:
        raise ConfigError(f"--devices must be at least 1 (got {devices})")
    return profile_settings


def _check_user_overrides(grid: str, grid_arms: dict[str, dict[str, Any]], user: dict[str, Any]) -> None:
    """A user override may not set what the arms vary (the arms would overwrite it) nor the seed
    (``--seeds`` sets it per run)."""
    varied = sorted({key for arm in grid_arms.values() for key in arm} & set(user))
    if varied:
        raise ConfigError(f"override(s) {varied} are what grid {grid!r} varies; drop them or pick another grid")
    if "train.seed" in user:
        raise ConfigError("train.seed is set per run from --seeds; use --seeds N instead")


def _arms_and_reference(grid: str, grid_arms: dict[str, dict[str, Any]],
                        base: Config) -> tuple[dict[str, dict[str, Any]], dict[str, Config], str]:
    """The grid's arms (name → overrides), their configs and the arm the others are compared with.

    In ``all`` the arms equal to the base are one arm, :data:`BASELINE_ARM`, the reference; a
    dose-response grid is compared with its weight-0 arm; an on/off grid must hold the base as
    exactly one arm, which is its reference.
    """
    arm_configs = {arm: apply_overrides(base, arm_overrides) for arm, arm_overrides in grid_arms.items()}
    base_key = experiment_key(base)
    same_as_base = [arm for arm, config in arm_configs.items() if experiment_key(config) == base_key]
    if grid == "all":
        arms = {BASELINE_ARM: {}}
        arms.update({arm: grid_arms[arm] for arm in grid_arms if arm not in same_as_base})
        arm_configs = {BASELINE_ARM: base, **{arm: arm_configs[arm] for arm in arms if arm != BASELINE_ARM}}
        return arms, arm_configs, BASELINE_ARM
    if grid in DOSE_WEIGHTS:  # weights, not on/off: the default weight need not be an arm
        return grid_arms, arm_configs, _dose_reference(grid)
    if len(same_as_base) != 1:  # every on/off grid must contain the baseline as one arm
        raise ConfigError(f"grid {grid!r} has {len(same_as_base)} arms equal to the baseline; expected one")
    return grid_arms, arm_configs, same_as_base[0]


def _run_spec(grid: str, profile: str, arm: str, seed: int, arm_overrides: dict[str, Any],
              arm_config: Config) -> RunSpec:
    """One arm at one seed, labelled for W&B (group, name, toggle tags); its id is of the config
    without those labels, so renaming a grid or an arm never moves a run's folder."""
    config = apply_overrides(arm_config, {"train.seed": seed})
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, wandb_group=grid, wandb_name=f"{arm}/seed{seed}", wandb_tags=toggle_tags(config, profile)))
    return RunSpec(run_id=run_id(config), grid=grid, arm=arm, seed=seed,
                   overrides={**arm_overrides, "train.seed": seed}, config=config)


def _baseline_config(base: Config, arm: str, arm_overrides: dict[str, Any]) -> Config:
    """The config of a trained baseline arm; a base it cannot be trained on is refused by name."""
    try:
        return apply_overrides(base, arm_overrides)
    except ConfigError as error:
        raise ConfigError(f"every grid trains the {arm} arm ({arm_overrides}), which this base config "
                          f"cannot: {error}") from None


def _as_dict(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    return parse_overrides(overrides)


def _dotted(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _check_equal_budgets(runs: list[RunSpec]) -> None:
    """Every run of a grid shares the split and the budget (docs/design.md §7.3)."""
    for key in SHARED_KEYS:
        values = {json.dumps(_dotted(run.config, key)) for run in runs}
        if len(values) > 1:
            raise ConfigError(f"runs of the grid differ in {key} ({sorted(values)}); arms must share it")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat or {prefix: {}}
    return {prefix: data}


def check_grid_folder(grid_dir: Path, plan: GridPlan) -> bool:
    """Check that ``grid_dir`` is empty or was made by the same grid definition.

    Returns:
        True if ``grid_dir/grid.json`` already exists (and matches).

    Raises:
        GridMismatchError: ``grid.json`` differs from the plan's definition; nothing is deleted.
    """
    path = Path(grid_dir) / runfolder.GRID_JSON
    if not path.exists():
        return False
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise GridMismatchError(f"{path} is unreadable ({error}); use another --out or move that folder "
                                "away (nothing was deleted)") from None
    current = json.loads(json.dumps(plan.definition()))
    if stored == current:
        return True
    old, new = _flatten(stored), _flatten(current)
    differing = sorted(key for key in old.keys() | new.keys() if old.get(key, "∅") != new.get(key, "∅"))
    shown = ", ".join(f"{key}: {old.get(key, '∅')!r} → {new.get(key, '∅')!r}" for key in differing[:4])
    more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
    raise GridMismatchError(
        f"{grid_dir} holds runs of a different grid definition (grid version "
        f"{stored.get('grid_version')!r} vs {GRID_VERSION}; differs in {shown}{more}). "
        "Use another --out, or move that folder away; nothing was deleted.")
