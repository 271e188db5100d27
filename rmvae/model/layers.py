"""Layers shared by the encoders, the decoders and the temporal model, and their CPU kernels.

- :func:`relu_linear`, :func:`fc_stack`, :class:`BiLSTMStack`: the building blocks of every
  encoder and decoder; :func:`conv_channels`, :data:`CONV_STRIDES`, :func:`conv_grid`: the
  convolutions' geometry, which a conv decoder mirrors.
- :func:`fast_dropout` / :class:`Dropout`: dropout with ``F.dropout``'s distribution, cheap on CPU.
- :func:`run_lstm`: ``nn.LSTM`` with that dropout between stacked layers; the private-API
  kernel it needs is confined to :func:`lstm_layer`, which falls back to the public call.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from rmvae.config import STEPS_PER_MEASURE, ModelConfig


def pick_measures(x: Tensor, measures: Tensor) -> Tensor:
    """``x[b, measures[b]]`` for every sample: ``(B, T, ...)`` and indices ``(B, k)`` → ``(B, k, ...)``."""
    rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    return x[rows, measures]


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

    With training-time dropout between stacked layers the layers are run one at a time
    (:func:`lstm_layer`, the kernel ``nn.LSTM`` calls per layer) with :func:`fast_dropout`
    between them: the fused call draws one Bernoulli number per element of every inner layer's
    output, which costs as much as a whole LSTM layer on CPU. Otherwise it is exactly ``lstm(x)``.
    """
    if not (lstm.training and lstm.dropout > 0 and lstm.num_layers > 1 and x.device.type == "cpu"
            and lstm.batch_first and lstm.proj_size == 0 and x.dim() == 3):
        return lstm(x)
    directions = 2 if lstm.bidirectional else 1
    zeros = x.new_zeros(directions, x.shape[0], lstm.hidden_size)
    x = x.transpose(0, 1)  # time-major between layers, as the fused call keeps it: no copies
    h_n, c_n = [], []
    for layer in range(lstm.num_layers):
        if layer > 0:
            x = fast_dropout(x, lstm.dropout)
        x, h, c = lstm_layer(lstm, layer, x, (zeros, zeros))
        h_n.append(h)
        c_n.append(c)
    return x.transpose(0, 1), (torch.cat(h_n), torch.cat(c_n))


def lstm_layer(lstm: nn.LSTM, layer: int, x: Tensor, hx: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Layer ``layer`` of ``lstm`` (every direction, no dropout) on time-major ``x (S, N, in)``
    from states ``hx``; returns the outputs ``(S, N, D·H)`` and the final ``h``, ``c`` ``(D, N, H)``.

    The one place that uses PyTorch's private API: ``torch._VF.lstm``, the kernel ``nn.LSTM``
    itself calls, on the layer's slice of ``lstm._flat_weights`` (no copies). A torch without
    them gets the same layer through the public ``nn.LSTM`` call (tests/test_model.py checks
    both paths against ``nn.LSTM``).
    """
    try:
        kernel, weights = torch._VF.lstm, lstm._flat_weights
    except AttributeError:
        return _public_lstm_layer(lstm, layer, x, hx)
    per_layer = len(weights) // lstm.num_layers
    return kernel(x, hx, weights[layer * per_layer:(layer + 1) * per_layer], lstm.bias, 1, 0.0, True,
                  lstm.bidirectional, False)


def _public_lstm_layer(lstm: nn.LSTM, layer: int, x: Tensor,
                      hx: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`lstm_layer` through a one-layer ``nn.LSTM`` that holds layer ``layer``'s parameters
    (built on the meta device: no memory, no draws from the random generator)."""
    single = nn.LSTM(x.shape[-1], lstm.hidden_size, bias=lstm.bias, bidirectional=lstm.bidirectional, device="meta")
    for name, _ in list(single.named_parameters()):
        setattr(single, name, getattr(lstm, name.replace("_l0", f"_l{layer}")))
    out, (h, c) = single(x, hx)
    return out, h, c


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
