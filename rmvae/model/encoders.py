"""Per-voice measure encoders: one measure of one voice ``(N, S, F)`` → a Gaussian expert (docs/design.md §2.1).

``N`` is every measure of the batch folded together (B·T). One encoder exists per voice;
the RMVAE keeps them in an ``nn.ModuleList``. Their layers live in :mod:`rmvae.model.layers`.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from rmvae.config import STEPS_PER_MEASURE, ModelConfig
from rmvae.model.layers import CONV_STRIDES, BiLSTMStack, Dropout, conv_channels, conv_grid, fc_stack


class VoiceEncoder(nn.Module):
    """RNN encoder: per-frame FC → bidirectional LSTM over the 16 frames → FC → (mu, logvar)."""

    def __init__(self, n_features: int, config: ModelConfig):
        super().__init__()
        layers = config.layers()
        self.frame_fc = fc_stack(n_features, layers["frame_fc"], config.dropout_fc)
        self.note_lstm = BiLSTMStack(layers["frame_fc"][-1], layers["note_lstm"], config.dropout_rnn)
        self.measure_fc = fc_stack(self.note_lstm.out_features, layers["measure_fc"], config.dropout_fc)
        self.to_mu = nn.Linear(layers["measure_fc"][-1], config.z_dim)
        self.to_logvar = nn.Linear(layers["measure_fc"][-1], config.z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, S, F)`` measure features → ``(mu, logvar)``, each ``(N, Z)``."""
        frames = self.frame_fc(x)  # (N, S, frame)
        _, final = self.note_lstm(frames)  # (N, 2H)
        h = self.measure_fc(final)
        return self.to_mu(h), self.to_logvar(h)


class ConvVoiceEncoder(nn.Module):
    """Conv encoder: the measure as a 1-channel image ``(16, F)`` → three 5×5 convolutions → FC → (mu, logvar)."""

    def __init__(self, n_features: int, config: ModelConfig):
        super().__init__()
        layers = config.layers()
        convs: list[nn.Module] = []
        in_channels = 1
        for channels, stride in zip(conv_channels(config), CONV_STRIDES):
            convs += [nn.Conv2d(in_channels, channels, 5, stride=stride, padding=2), nn.ReLU(),
                      Dropout(config.dropout_rnn)]
            in_channels = channels
        self.convs = nn.Sequential(*convs)
        steps, features = conv_grid(n_features)
        self.measure_fc = fc_stack(in_channels * steps * features, layers["measure_fc"], config.dropout_fc)
        self.to_mu = nn.Linear(layers["measure_fc"][-1], config.z_dim)
        self.to_logvar = nn.Linear(layers["measure_fc"][-1], config.z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, S, F)`` measure features → ``(mu, logvar)``, each ``(N, Z)``."""
        h = self.convs(rearrange(x, "n s f -> n 1 s f"))  # (N, C, 4, ⌈F/8⌉)
        h = self.measure_fc(torch.flatten(h, start_dim=1))
        return self.to_mu(h), self.to_logvar(h)


class FCVoiceEncoder(nn.Module):
    """FC encoder: the measure's 16 frames flattened → FC → (mu, logvar).

    An order of magnitude fewer FLOPs than the conv or RNN encoders: on a CPU budget it sees
    many more windows per minute, and a one-hot measure of 16 steps needs no recurrence to be
    read.
    """

    def __init__(self, n_features: int, config: ModelConfig):
        super().__init__()
        widths = config.layers()["measure_fc"]
        self.measure_fc = fc_stack(STEPS_PER_MEASURE * n_features, widths, config.dropout_fc)
        self.to_mu = nn.Linear(widths[-1], config.z_dim)
        self.to_logvar = nn.Linear(widths[-1], config.z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, S, F)`` measure features → ``(mu, logvar)``, each ``(N, Z)``."""
        h = self.measure_fc(torch.flatten(x, start_dim=1))
        return self.to_mu(h), self.to_logvar(h)
