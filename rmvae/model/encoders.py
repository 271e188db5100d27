"""Per-voice measure encoders: one measure of one voice ``(N, S, F)`` → a Gaussian expert (SPEC §2.1).

``N`` is every measure of the batch folded together (B·T). One encoder exists per voice;
the RMVAE keeps them in an ``nn.ModuleList``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, _VF, nn
from torch.nn import functional as F

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


# Above this rate the sparse sampling below saves nothing over one Bernoulli draw per element.
SPARSE_DROPOUT_MAX_P = 0.05


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout`` with the same distribution, much cheaper on CPU for the small rates used here.

    Each element is zeroed independently with probability ``p`` and the rest are scaled by
    1/(1 − p), exactly as ``F.dropout``. On CPU one uniform random number per element costs
    more than the LSTM layer it follows (1e-3 over an (N, 16, 2H) output), so for p ≤ 5 %
    only the dropped positions are drawn: the gaps between the successes of i.i.d. Bernoulli(p)
    trials are i.i.d. Geometric(p), so their cumulative sums are the dropped indices, n·p draws
    instead of n. Same masks in distribution, not the same random stream as ``F.dropout``;
    other devices and larger rates use ``F.dropout``.
    """
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p > SPARSE_DROPOUT_MAX_P or x.numel() == 0:
        return F.dropout(x, p, training)
    n = x.numel()
    chunk = int(n * p + 8 * math.sqrt(n * p) + 16)  # enough gaps to pass n almost always
    ends = torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0)  # 1-based positions
    while ends[-1].item() <= n:
        ends = torch.cat([ends, torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0) + ends[-1]])
    dropped = ends[ends <= n].long() - 1
    return _SparseDropout.apply(x, dropped, 1.0 / (1.0 - p))


def _zero_flat(x: Tensor, order: list[int], dropped: Tensor) -> Tensor:
    """Zero ``x.permute(order).flatten()[dropped]`` in place when that permutation is x's memory order."""
    dense = x.permute(order)
    if not dense.is_contiguous():
        x = x.contiguous()
        dense = x.permute(order).contiguous()
        dense.view(-1).index_fill_(0, dropped, 0.0)
        return dense.permute([order.index(d) for d in range(len(order))])
    dense.view(-1).index_fill_(0, dropped, 0.0)
    return x


class _SparseDropout(torch.autograd.Function):
    """x·scale with the given elements zeroed; the same elements of the gradient are zeroed.

    Elements are numbered in x's memory order (an LSTM's batch-first output is a transposed
    view), so neither pass copies x; the number → element map is fixed once, so forward and
    backward drop the same elements whatever the gradient's layout.
    """

    @staticmethod
    def forward(ctx, x: Tensor, dropped: Tensor, scale: float) -> Tensor:
        out = x * scale  # TensorIterator keeps x's memory layout
        order = sorted(range(x.dim()), key=lambda d: (x.stride(d), x.shape[d]), reverse=True)
        ctx.save_for_backward(dropped)
        ctx.order, ctx.scale = order, scale
        return _zero_flat(out, order, dropped)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (dropped,) = ctx.saved_tensors
        return _zero_flat(grad * ctx.scale, ctx.order, dropped), None, None


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`fast_dropout` (same distribution, cheap on CPU; no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return fast_dropout(x, self.p, self.training)


def run_lstm(lstm: nn.LSTM, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``lstm(x)`` from zero states, for ``batch_first`` input; the same outputs and ``(h_n, c_n)``.

    With training-time dropout between stacked layers the layers are run one at a time (the
    same oneDNN kernels ``nn.LSTM`` calls per layer) with :func:`fast_dropout` between them: the
    fused call draws one Bernoulli number per element of every inner layer's output, which
    costs as much as a whole LSTM layer on CPU. Otherwise it is exactly ``lstm(x)``.
    """
    if not (lstm.training and lstm.dropout > 0 and lstm.num_layers > 1 and x.device.type == "cpu"
            and lstm.batch_first and lstm.proj_size == 0 and x.dim() == 3):
        return lstm(x)
    directions = 2 if lstm.bidirectional else 1
    weights = lstm._flat_weights
    per_layer = len(weights) // lstm.num_layers
    zeros = x.new_zeros(directions, x.shape[0], lstm.hidden_size)
    x = x.transpose(0, 1)  # time-major between layers, as the fused call keeps it: no copies
    h_n, c_n = [], []
    for layer in range(lstm.num_layers):
        if layer > 0:
            x = fast_dropout(x, lstm.dropout)
        x, h, c = _VF.lstm(x, (zeros, zeros), weights[layer * per_layer:(layer + 1) * per_layer], lstm.bias, 1,
                           0.0, True, lstm.bidirectional, False)
        h_n.append(h)
        c_n.append(c)
    return x.transpose(0, 1), (torch.cat(h_n), torch.cat(c_n))


def fc_stack(in_features: int, widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout for every width (thesis: dropout 1e-2 after FC layers)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [relu_linear(in_features, width), nn.ReLU(), Dropout(dropout)]
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
        self.dropout = Dropout(dropout)
        self.out_features = in_features

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the per-frame outputs ``(N, S, 2H)`` and the final forward/backward states ``(N, 2H)``."""
        for i, lstm in enumerate(self.lstms):
            if i > 0:
                x = self.dropout(x)
            x, (h_n, _) = run_lstm(lstm, x)
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
