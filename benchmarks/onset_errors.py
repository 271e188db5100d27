"""Where greedy onset accuracy is lost: at every test step whose truth is a note onset, is the
greedy prediction that onset, a hold, a rest, or an onset of another pitch?

    python benchmarks/onset_errors.py CKPT [CKPT ...]   # e.g. an RMVAE and its direct predictor

The prediction is the one ``test/acc_onsets`` scores: the greedy decoding of the predictive
marginal (16 latent draws, the evaluation's fixed noise) for a model with latents, of the
prediction for the direct predictor. ``downbeat`` is the accuracy on onsets at step 0 alone,
the step the last input measure says most about (the reference MLP of docs/experiments.md: 0.43).
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from rmvae.evaluation import load_checkpoint, test_datamodule


def onset_outcomes(checkpoint: str) -> dict[str, float]:
    module = load_checkpoint(checkpoint)
    datamodule = test_datamodule(module)
    n_pitches, hold = module.pitch_range.n_pitches, module.pitch_range.hold
    counts = dict(correct=0, hold=0, rest=0, other_pitch=0, downbeat_correct=0, downbeat=0)
    loader = DataLoader(datamodule.datasets["test"], batch_size=module.config.data.batch_size)
    with torch.inference_mode():
        for batch_idx, batch in enumerate(loader):
            output = module.model(batch["inputs"], batch["input_mask"].bool(), sample=False, reconstruct=False)
            prediction = module.scored_prediction(output, batch_idx)
            predicted, truth = module.model.decode_tokens(prediction), batch["target"].long()  # (B, V, S)
            onset = truth < n_pitches
            counts["correct"] += int((onset & (predicted == truth)).sum())
            counts["hold"] += int((onset & (predicted == hold)).sum())
            counts["rest"] += int((onset & (predicted == module.pitch_range.rest)).sum())
            counts["other_pitch"] += int((onset & (predicted < n_pitches) & (predicted != truth)).sum())
            counts["downbeat_correct"] += int((onset[..., 0] & (predicted[..., 0] == truth[..., 0])).sum())
            counts["downbeat"] += int(onset[..., 0].sum())
    onsets = counts["correct"] + counts["hold"] + counts["rest"] + counts["other_pitch"]
    shares = {key: counts[key] / onsets for key in ("correct", "hold", "rest", "other_pitch")}
    return {"onsets": onsets, **shares, "downbeat": counts["downbeat_correct"] / counts["downbeat"],
            "kind": module.config.model.kind}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'checkpoint':<60} {'kind':>7} {'onsets':>7} {'correct':>8} {'as hold':>8} {'as rest':>8} "
          f"{'other pitch':>12} {'downbeat':>9}")
    for checkpoint in args.checkpoints:
        r = onset_outcomes(checkpoint)
        print(f"{checkpoint[-60:]:<60} {r['kind']:>7} {r['onsets']:>7} {r['correct']:>8.3f} {r['hold']:>8.3f} "
              f"{r['rest']:>8.3f} {r['other_pitch']:>12.3f} {r['downbeat']:>9.3f}")


if __name__ == "__main__":
    main()
