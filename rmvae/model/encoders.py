"""Per-voice measure encoders: one measure of one voice ``(N, S, F)`` → a Gaussian expert (SPEC §2.1).

``N`` is every measure of the batch folded together (B·T). One encoder exists per voice;
the RMVAE keeps them in an ``nn.ModuleList``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from rmvae.config import STEPS_PER_MEASURE, ModelConfig


def relu_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer that feeds a ReLU, with He initialisation (He et al. 2015) and zero bias.

    PyTorch's default initialisation shrinks the signal's variance about sixfold per ReLU
    layer; through the FC → LSTM → FC encoders every measure then maps to nearly the same
    latent and training stalls (tests/test_model.py::test_overfit_one_batch).
    """
    layer = nn.Linear(in_features, out_features)
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


def fc_stack(in_features: int, widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout for every width (thesis: dropout 1e-2 after FC layers)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [relu_linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
        in_features = width
    return nn.Sequential(*layers)


class BiLSTMStack(nn.Module):
    """Bidirectional LSTM layers of the given widths, ``(N, S, in)`` → ``(N, S, 2·widths[-1])``.

    Runs of equal widths become one multi-layer ``nn.LSTM`` (dropout between its layers);
    different widths are chained with a dropout in between.
    """

    def __init__(self, in_features: int, widths: Sequence[int], dropout: float):
        super().__init__()
        runs: list[list[int]] = []
        for width in widths:
            if runs and runs[-1][0] == width:
                runs[-1].append(width)
            else:
                runs.append([width])
        self.lstms = nn.ModuleList()
        for run in runs:
            self.lstms.append(nn.LSTM(in_features, run[0], num_layers=len(run), batch_first=True,
                                      bidirectional=True, dropout=dropout if len(run) > 1 else 0.0))
            in_features = 2 * run[0]
        self.dropout = nn.Dropout(dropout)
        self.out_features = in_features

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the per-frame outputs ``(N, S, 2H)`` and the final forward/backward states ``(N, 2H)``."""
        for i, lstm in enumerate(self.lstms):
            if i > 0:
                x = self.dropout(x)
            x, (h_n, _) = lstm(x)
        final = rearrange(h_n[-2:], "d n h -> n (d h)")  # last layer's forward and backward states
        return x, final


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


def conv_channels(config: ModelConfig) -> tuple[int, int, int]:
    """Channels of the three 5×5 convolutions, tied to the preset's note-LSTM width."""
    width = config.layers()["note_lstm"][-1]
    return max(4, width // 4), max(4, width // 2), width


# (time, feature) strides of the three convolutions: 16 steps → 8 → 4 → 4, F → ⌈F/8⌉.
CONV_STRIDES = ((2, 2), (2, 2), (1, 2))


def conv_grid(n_features: int) -> tuple[int, int]:
    """``(steps, features)`` of the last convolution's output for a ``(16, n_features)`` input."""
    steps, features = STEPS_PER_MEASURE, n_features
    for step_stride, feature_stride in CONV_STRIDES:
        steps, features = -(-steps // step_stride), -(-features // feature_stride)  # padding 2, kernel 5
    return steps, features


class ConvVoiceEncoder(nn.Module):
    """Conv encoder: the measure as a 1-channel image ``(16, F)`` → three 5×5 convolutions → FC → (mu, logvar)."""

    def __init__(self, n_features: int, config: ModelConfig):
        super().__init__()
        layers = config.layers()
        convs: list[nn.Module] = []
        in_channels = 1
        for channels, stride in zip(conv_channels(config), CONV_STRIDES):
            convs += [nn.Conv2d(in_channels, channels, 5, stride=stride, padding=2), nn.ReLU(),
                      nn.Dropout(config.dropout_rnn)]
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
