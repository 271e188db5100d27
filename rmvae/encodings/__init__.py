"""Measure encodings behind one interface (:class:`Encoding`): ``mono`` tokens and ``poly``
activation/duration arrays. Callers hold an encoding object; the name is parsed once, where a
config value or a checkpoint's ``encoding_info`` is read (:func:`encoding_named`).

The low-level note ↔ array conversions they call live in :mod:`rmvae.data.notes`.
"""
from __future__ import annotations

from rmvae.config import ConfigError
from rmvae.encodings.base import Decoded, Encoding
from rmvae.encodings.mono import MonoEncoding
from rmvae.encodings.poly import PolyEncoding

MONO, POLY = MonoEncoding(), PolyEncoding()
ENCODINGS: dict[str, Encoding] = {encoding.name: encoding for encoding in (MONO, POLY)}


def encoding_named(name: str | Encoding) -> Encoding:
    """The encoding called ``name`` (an :class:`Encoding` is returned as it is)."""
    if isinstance(name, Encoding):
        return name
    if name not in ENCODINGS:
        raise ConfigError(f"encoding={name!r} is not valid; choose one of {sorted(ENCODINGS)}")
    return ENCODINGS[name]


__all__ = ["Decoded", "Encoding", "MonoEncoding", "PolyEncoding", "MONO", "POLY", "ENCODINGS", "encoding_named"]
