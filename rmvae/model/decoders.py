"""Per-voice measure decoders: a latent ``(N, Z)`` (and the temporal state, when the model's
decoders read it) → one voice's measure as logits (docs/design.md §2.6).

Both decoders mirror their encoders and end in the heads of the encoding (built and applied by
:class:`rmvae.encodings.Encoding`):

- mono: ``to_pitch`` → pitch+rest logits ``(N, S, P+1)`` (softmax) and ``to_hold`` →
  note_continue logit ``(N, S)`` (sigmoid); the thesis's fix for the silent-output collapse.
- poly: ``to_activation`` → activation logits ``(N, S, P)`` (sigmoid) and ``to_duration`` →
  duration in sixteenths ``(N, S, P)`` (ReLU).

Heads return logits, never probabilities.
"""
from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from rmvae.config import STEPS_PER_MEASURE, ModelConfig
from rmvae.encodings import Encoding, encoding_named
from rmvae.model.layers import (CONV_STRIDES, BiLSTMStack, Dropout, conv_channels, conv_grid, fc_stack,
                                relu_linear)


class _Heads(nn.Module):
    """Output heads shared by both decoders (named after what they predict)."""

    def _build_measure_fc(self, config: ModelConfig, in_features: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Every decoder's first stage, the encoder's measure FC reversed, from the decoder input;
        returns the reversed measure and frame widths."""
        layers = config.layers()
        measure_widths = tuple(reversed(layers["measure_fc"]))
        self.measure_fc = fc_stack(in_features, measure_widths, config.dropout_fc)
        return measure_widths, tuple(reversed(layers["frame_fc"]))

    def _build_heads(self, in_features: int, encoding: Encoding | str, n_pitches: int) -> None:
        self.encoding = encoding_named(encoding)
        self.encoding.build_heads(self, in_features, n_pitches)

    def _apply_heads(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, S, H)`` → mono ``(pitch (N, S, P+1), hold (N, S))`` or poly ``(activation, duration)``."""
        return self.encoding.apply_heads(self, frames)


class VoiceDecoder(_Heads):
    """RNN decoder: z → FC (reversed measure FC) → 16 frames (layer-normed) → bidirectional LSTM → per-frame FC → heads."""

    def __init__(self, config: ModelConfig, encoding: Encoding | str, n_pitches: int, in_features: int):
        super().__init__()
        measure_widths, frame_widths = self._build_measure_fc(config, in_features)
        self.frame_size = frame_widths[0]
        self.to_frames = nn.Linear(measure_widths[-1], STEPS_PER_MEASURE * self.frame_size)
        # Normalised frames keep the LSTM's gates out of saturation whatever the latent's scale
        # (before β rises nothing pins z to N(0, I)); without it training stalls.
        self.frame_norm = nn.LayerNorm(self.frame_size)
        self.note_lstm = BiLSTMStack(self.frame_size, tuple(reversed(config.layers()["note_lstm"])), config.dropout_rnn)
        self.frame_fc = fc_stack(self.note_lstm.out_features, frame_widths, config.dropout_fc)
        self._build_heads(frame_widths[-1], encoding, n_pitches)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, Z)`` → the two head outputs (see the module docstring)."""
        h = self.to_frames(self.measure_fc(z))
        frames = self.frame_norm(rearrange(h, "n (s h) -> n s h", s=STEPS_PER_MEASURE))  # (N, S, frame)
        frames, _ = self.note_lstm(frames)  # (N, S, 2H)
        return self._apply_heads(self.frame_fc(frames))


class ConvVoiceDecoder(_Heads):
    """Conv decoder: z → FC → transposed 5×5 convolutions back to a (16, F') image → per-frame FC → heads."""

    def __init__(self, config: ModelConfig, encoding: Encoding | str, n_pitches: int, in_features: int):
        super().__init__()
        channels = tuple(reversed(conv_channels(config))) + (1,)
        self.grid = conv_grid(encoding_named(encoding).n_features(n_pitches))  # (4, ⌈F/8⌉)
        measure_widths, frame_widths = self._build_measure_fc(config, in_features)
        self.to_grid = nn.Sequential(relu_linear(measure_widths[-1], channels[0] * self.grid[0] * self.grid[1]),
                                     nn.ReLU())
        deconvs: list[nn.Module] = []
        strides = tuple(reversed(CONV_STRIDES))
        for i, stride in enumerate(strides):
            # output_padding makes each layer exactly undo a stride-2 convolution: size × stride.
            padding_out = tuple(s - 1 for s in stride)
            deconvs.append(nn.ConvTranspose2d(channels[i], channels[i + 1], 5, stride=stride, padding=2,
                                              output_padding=padding_out))
            if i < len(strides) - 1:
                deconvs += [nn.ReLU(), Dropout(config.dropout_rnn)]
        self.deconvs = nn.Sequential(*deconvs)
        out_features = self.grid[1]
        for _, feature_stride in CONV_STRIDES:
            out_features *= feature_stride  # F' = 8·⌈F/8⌉ ≥ F
        self.frame_fc = fc_stack(out_features, frame_widths, config.dropout_fc)
        self._build_heads(frame_widths[-1], encoding, n_pitches)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, Z)`` → the two head outputs (see the module docstring)."""
        h = self.to_grid(self.measure_fc(z))
        h = rearrange(h, "n (c s f) -> n c s f", s=self.grid[0], f=self.grid[1])
        image = self.deconvs(h)  # (N, 1, 16, F')
        return self._apply_heads(self.frame_fc(rearrange(image, "n 1 s f -> n s f")))


class FCVoiceDecoder(_Heads):
    """FC decoder: z → FC (reversed measure FC) → 16 frames → per-frame FC → heads (mirror of the FC encoder)."""

    def __init__(self, config: ModelConfig, encoding: Encoding | str, n_pitches: int, in_features: int):
        super().__init__()
        measure_widths, frame_widths = self._build_measure_fc(config, in_features)
        self.frame_size = frame_widths[0]
        self.to_frames = nn.Sequential(relu_linear(measure_widths[-1], STEPS_PER_MEASURE * self.frame_size), nn.ReLU())
        self.frame_fc = fc_stack(self.frame_size, frame_widths[1:], config.dropout_fc)
        self._build_heads(frame_widths[-1], encoding, n_pitches)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, in)`` → the two head outputs (see the module docstring)."""
        frames = rearrange(self.to_frames(self.measure_fc(z)), "n (s h) -> n s h", s=STEPS_PER_MEASURE)
        return self._apply_heads(self.frame_fc(frames))
