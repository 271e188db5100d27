"""FLOPs of a training step, counted on the real module by ``torch.utils.flop_counter.FlopCounterMode``,
and the machine's fp32 / bf16 matmul peak (used by benchmarks/train_throughput.py).

FlopCounterMode counts the matmuls that run (``addmm``, ``mm``, ``bmm``, convolutions) in the
forward and the backward pass. It has no formula for the fused oneDNN LSTM
(``mkldnn_rnn_layer``) that runs on CPU, so a step is counted twice: as run (the LSTMs not
counted) and with oneDNN switched off, where the LSTMs run as ATen's cell loop of
``addmm``/``mm``, which it counts. The second is a step's FLOPs; elementwise work, LayerNorm and
softmax are left out either way.
"""
from __future__ import annotations

import re
import time
from typing import Callable

# Parts of the model by module name. FlopCounterMode names a module by its path from the first
# module it sees called: ``RMVAE.encoders.0`` when the RMVAE is called, ``VoiceEncoder`` (every
# voice's together) when model_step calls the encoders from RMVAE's methods. Counts nest: a
# part's FC is its total minus its LSTM. Only these names are read: deeper ones can be wrong in
# the backward pass (a module whose input needs no gradient never leaves the tracker's parents).
_ENCODER, _DECODER = r"(^|\.)(\w*VoiceEncoder|encoders\.\d+)", r"(^|\.)(\w*VoiceDecoder|decoders\.\d+)"
_PARTS = {"encoder": _ENCODER + "$", "encoder LSTM": _ENCODER + r"\.note_lstm$",
          "decoder": _DECODER + "$", "decoder LSTM": _DECODER + r"\.note_lstm$"}


def counted_flops(step: Callable[[], None], native_lstm: bool) -> dict:
    """FlopCounterMode's count of ``step()`` (forward + backward), seeded.

    Returns ``total``, ``ops`` (the operators counted) and ``parts``, the FLOPs of: ``encoder FC``,
    ``encoder LSTM``, ``decoder FC``, ``decoder LSTM`` (every voice's) and ``temporal + losses``
    (everything outside the voices' encoders and decoders: the temporal LSTM, the prior heads, the
    losses' matmuls). ``native_lstm`` switches oneDNN off so that the LSTMs are counted.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    torch.manual_seed(0)  # the same random draws (subsets, measures, dropout) in every count
    with torch.backends.mkldnn.flags(enabled=not native_lstm), counter:
        step()
    counts = counter.get_flop_counts()
    by_part = {part: sum(sum(ops.values()) for name, ops in counts.items() if re.search(pattern, name))
               for part, pattern in _PARTS.items()}
    total = counter.get_total_flops()
    parts = {"encoder FC": by_part["encoder"] - by_part["encoder LSTM"], "encoder LSTM": by_part["encoder LSTM"],
             "decoder FC": by_part["decoder"] - by_part["decoder LSTM"], "decoder LSTM": by_part["decoder LSTM"]}
    parts["temporal + losses"] = total - sum(parts.values())
    return {"total": total, "ops": sorted(str(op) for op in counts.get("Global", {})), "parts": parts}


def lstm_flops(parts: dict) -> int:
    """FLOPs of the voices' note LSTMs among :func:`counted_flops`'s parts (all but the temporal LSTM's)."""
    return parts["encoder LSTM"] + parts["decoder LSTM"]


def measure_peak(sizes=(1024, 1536, 2048), dtype=None, seconds: float = 0.6) -> dict[str, float]:
    """Best GFLOP/s of torch.mm and F.linear (x @ W^T, oneDNN) on square matrices."""
    import torch
    from torch.nn import functional as F

    dtype = dtype or torch.float32
    best = {"mm": 0.0, "linear": 0.0}
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        for name, fn in (("mm", lambda: torch.mm(a, b)), ("linear", lambda: F.linear(a, b))):
            best[name] = max(best[name], 2 * n ** 3 / fastest_seconds(fn, seconds) / 1e9)
    return best


def fastest_seconds(fn: Callable[[], object], seconds: float, min_reps: int = 3) -> float:
    """The fastest of repeated ``fn()`` calls (one untimed first), for at least ``seconds`` and ``min_reps`` calls."""
    fn()
    started, reps, fastest = time.perf_counter(), 0, float("inf")
    while reps < min_reps or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - t0)
        reps += 1
    return fastest
