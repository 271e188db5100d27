"""Named sets of config overrides: the training budgets (``--profile``) and the thesis's design.

Every default lives in :mod:`rmvae.config`; these are the named departures from it that the
command line and the ablation grids share.
"""
from __future__ import annotations

from typing import Any

from rmvae.config import ConfigError

# Training budgets, shared by `rmvae train --profile` and the ablation grids (docs/design.md §7.4).
# Each states only what differs from the Config defaults. `quick` should finish the harmony grid
# (2 arms, the direct predictor and the autoregressive baseline × 3 seeds) in under 10 minutes on
# 2 CPU cores including evaluation, and select checkpoints on the whole validation split. What each
# costs a run is stated once, in PROFILE_DESCRIPTIONS below, which both commands' --profile help reads.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "model.size": "small",  # docs/design.md §7.1: small in the quick profile
        "model.width_scale": 0.5,  # half the small preset's widths: the measure writer is the cost
        "data.max_pieces": 80,  # training pieces; val/test stay whole
        "data.batch_size": 32,
        "loss.n_subsets": 1,
        "loss.recon_inputs_measures": 2,
        "train.max_epochs": 1000,  # the step budget below is what stops training
        "train.max_steps": 102,  # 3 epochs of the 80 pieces (34 batches of 32 windows each)
        "train.val_every_n_epochs": 1,  # the whole validation split, every epoch
        "train.accelerator": "cpu",
        "train.log_every_n_steps": 4,
    },
    "cpu": {
        # small: at the default lr 3e-3 the autoregressive measure decoder's validation NLL is lowest
        # after ≈ 530 steps and rises after it (the factorised decoder's levels off after ≈ 950).
        # The medium model learns faster per step but overfits sooner at 1.7× the cost
        # (docs/experiments.md, "The objective").
        "model.size": "small",
        "loss.recon_inputs_measures": 2,
        "train.max_epochs": 1000,
        "train.max_steps": 636,  # 12 epochs of the whole training split (53 batches of 64)
        "train.accelerator": "cpu",
        "train.log_every_n_steps": 10,
    },
    "full": {
        "model.size": "medium",
        "train.max_epochs": 50,  # thesis: 50 epochs
        "train.max_steps": -1,
    },
}


# What each budget is for and what a run of it costs: the one statement of the profiles' run
# times, which the --profile help of `rmvae train` and `ablations/run.py` is built from.
PROFILE_DESCRIPTIONS: dict[str, str] = {
    # measured: the quick harmony grid's 12 runs, two at once on 2 cores (docs/results.md)
    "quick": "CPU, minutes: the small model at half width on 80 pieces",
    # measured: 21–22 min a run of the default, 1 thread each, two runs at once (decoder grid)
    "cpu": "≈20 min a run on 2 cores, the whole training split, reaches a verdict",
    "full": "thesis scale, GPUs: the medium model, 50 epochs",
}
assert set(PROFILE_DESCRIPTIONS) == set(PROFILES)


def profiles_help() -> str:
    """The profiles and what each costs, for a ``--profile`` help text: "quick (…), cpu (…) or full (…)"."""
    described = [f"{name} ({PROFILE_DESCRIPTIONS[name]})" for name in PROFILES]
    return ", ".join(described[:-1]) + " or " + described[-1]


def profile_overrides(name: str) -> dict[str, Any]:
    """The overrides of a training profile; an unknown name is a ConfigError naming the valid ones."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[name])


# The thesis's design as overrides of the defaults above: RNN encoders, the temporal LSTM over
# sampled PoE/RPoE latents, N(0, I) priors, z-only decoders, the target drawn from the
# prediction. The `objective` grid keeps it reproducible as one arm (docs/design.md §2.8).
THESIS_DESIGN: dict[str, Any] = {
    "model.encoder": "rnn",
    "model.temporal_input": "latents",
    "model.latent_prior": "standard",
    "model.decoder_context": False,
    "model.measure_decoder": "factorised",  # per-voice decoders, every token independent
    "loss.free_bits": 0.0,
    "loss.target_posterior": False,
    "loss.elbo_terms": "subsampled",
    "loss.harmony_weights": (0.01, 0.01, 0.01),  # the thesis's weight, a ≈ 0.3 % gradient share here
    "train.lr": 1e-3,  # the thesis's (docs/design.md §3.7); a grid's arms share the grid's learning rate instead
}
