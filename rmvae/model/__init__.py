"""The RMVAE network (docs/design.md §2). Plain PyTorch: nothing here imports Lightning.

Shape legend (one canonical order everywhere):

    B  batch (windows)
    T  measures of the input window (one model step = one measure)
    V  voices (modalities): soprano, alto, tenor, bass by default
    S  steps per measure: 16 sixteenths of a 4/4 measure
    C  mono classes, P + 2: pitches 0..P-1 (pitch low + class), P rest, P+1 note_continue
    P  pitches of the shared range
    F  per-step input features: C (mono one-hot) or 2P (poly activation, duration flattened)
    Z  latent size (ModelConfig.z_dim)
    E  experts in one product of experts

    tokens      (B, T, V, S)        int, mono input
    poly        (B, T, V, S, P, 2)  float, poly input (activation, duration)
    features    (B, T, V, S, F)     what the encoders read (RMVAE.features)
    mask        (B, T, V)           bool or 0/1 float, 1 = voice present
    experts     (B, T, V, Z)        mu and logvar of every voice of every measure
    posterior   (B, T, Z)           (R)PoE of a measure's experts and its prior expert
    target      (B, V, S[, P, 2])   the measure to predict; target_mask (B, V) = known voices
"""
from rmvae.model.decoders import ConvVoiceDecoder, VoiceDecoder
from rmvae.model.encoders import ConvVoiceEncoder, VoiceEncoder
from rmvae.model.poe import product_of_experts, recurrent_posteriors
from rmvae.model.rmvae import RMVAE, Decoded, RMVAEOutput, reparameterise

__all__ = ["RMVAE", "RMVAEOutput", "Decoded", "VoiceEncoder", "ConvVoiceEncoder", "VoiceDecoder",
           "ConvVoiceDecoder", "product_of_experts", "recurrent_posteriors", "reparameterise"]
