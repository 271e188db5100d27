"""`rmvae generate`: complete, fill, harmonize, redo, noise, inpaint or interpolate from a checkpoint.

Writes OUT (.mid) and a pianoroll OUT.png (seed measures shaded), plus OUT.wav with --audio.

--voices names the voices to generate (fill, inpaint): 0 = soprano … 3 = bass.
--melody-voice names which voice a one-voice melody becomes (harmonize, default 0).
--mask gives what to regenerate (inpaint): MEASURES:VOICES items separated by ';', measures
1-based and inclusive, voices 0-based, 'all' for every one. Examples: '3-4:1,2' regenerates
voices 1 and 2 in measures 3–4; '1-2:all;7:3' also regenerates the bass of measure 7.
"""
from __future__ import annotations

import argparse
from pathlib import Path

TASKS = ("complete", "fill", "harmonize", "redo", "noise", "inpaint", "interpolate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("checkpoint", help="a .ckpt written by `rmvae train`")
    parser.add_argument("--task", choices=TASKS, required=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", help="input MIDI file (read like training data)")
    source.add_argument("--chorale", help="a music21 Bach chorale id, e.g. bwv66.6")
    parser.add_argument("--input-b", help="second MIDI file (interpolate)")
    parser.add_argument("--chorale-b", help="second chorale id (interpolate)")
    parser.add_argument("--voices", type=int, nargs="+", help="voices to generate (fill)")
    parser.add_argument("--melody-voice", type=int, default=0, help="voice a one-voice melody becomes (harmonize)")
    parser.add_argument("--mask", help="voice×measure ranges to regenerate (inpaint), see below")
    parser.add_argument("--measures", type=int, default=8, help="new measures (complete, noise); seed length (noise)")
    parser.add_argument("--seed-measures", type=int, help="use only the first N measures of the input as the seed")
    parser.add_argument("--noise", choices=["gaussian", "uniform", "binomial"], default="gaussian")
    parser.add_argument("--temperature", type=float, default=None,
                        help="per-token sampling; 0 = greedy (deterministic). Default: the checkpoint's default "
                             "decoding (an autoregressive decoder: rmvae.tasks.WRITER_DECODING, or the task's own in "
                             "rmvae.tasks.TASK_DECODING; factorised: greedy)")
    parser.add_argument("--latent-temperature", type=float, default=None,
                        help="draw each measure's latent from the predicted Gaussian with σ scaled by this "
                             "(1 = the model's own spread; 0 = its mean), then decode (greedily unless --temperature)")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float, default=None,
                        help="nucleus sampling: draw among the most likely tokens whose mass reaches p "
                             "(autoregressive decoders only)")
    parser.add_argument("--no-parallels", action="store_true",
                        help="never draw a pitch that makes parallel fifths or octaves with a voice already written "
                             "at the same step (autoregressive decoders only)")
    parser.add_argument("--dissonance-penalty", type=float, default=None, metavar="NATS",
                        help="lower a token's log-probability by this much for every voice already written at the "
                             "step it would clash with (second, tritone, seventh); 0 = off (autoregressive decoders only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and noise")
    parser.add_argument("--pickup", type=float, default=0.0, metavar="BEATS", help="pickup length of a MIDI input")
    parser.add_argument("--tempo", type=float, help="tempo of the output (default: the input's, or 120)")
    parser.add_argument("--program", type=int, nargs="+", help="General MIDI program per voice")
    parser.add_argument("--audio", action="store_true", help="also write OUT.wav")
    parser.add_argument("--out", required=True, help="output .mid path")


def read_piece(args, module, path: str | None, chorale: str | None, one_voice: bool = False):
    """An input MIDI file or chorale → Piece in the model's encoding (same reader as training)."""
    import numpy as np

    from rmvae.data.datamodule import encode_piece
    from rmvae.data.midi import ScoreError, read_midi, read_music21
    from rmvae.errors import UserError
    from rmvae.tasks import Piece

    data = module.config.data
    n_voices = 1 if one_voice else module.n_voices
    if chorale:
        import music21

        try:
            source = music21.corpus.parse(f"bach/{chorale}" if "/" not in chorale else chorale)
        except Exception:
            raise UserError(f"unknown chorale id '{chorale}'; ids look like bwv66.6 "
                            f"(see music21.corpus.getComposer('bach'))") from None
        reader = lambda: read_music21(source, n_voices, data.time_signature, data.transpose, name=chorale)  # noqa: E731
        label = f"chorale {chorale}"
    elif path:
        if not Path(path).is_file():
            raise UserError(f"input file '{path}' does not exist")
        reader = lambda: read_midi(path, n_voices, data.time_signature, data.transpose, args.pickup)  # noqa: E731
        label = f"'{path}'"
    else:
        raise UserError(f"--task {args.task} needs --input MIDI or --chorale ID")
    try:
        score = reader()
    except ScoreError as error:
        hint = " (harmonize takes a file holding only the melody)" if one_voice else ""
        raise UserError(f"{label} cannot be used: {error}{hint}") from None
    encoded, _ = encode_piece(score, module.pitch_range)
    measures = module.encoding.measures_of(encoded.tokens, encoded.durations, module.pitch_range)
    if args.seed_measures:
        measures = measures[:args.seed_measures]
    return Piece(measures, np.zeros(measures.shape[:2], dtype=bool), score.key_shift, score.tempo)


def sampling_of(args, module):
    """The checkpoint's default decoding (:func:`rmvae.tasks.default_sampling`) with the options given."""
    from dataclasses import replace

    from rmvae.tasks import default_sampling

    given = {"temperature": args.temperature, "latent_temperature": args.latent_temperature, "top_k": args.top_k,
             "top_p": args.top_p, "no_parallels": args.no_parallels or None,
             "dissonance_penalty": args.dissonance_penalty}
    return replace(default_sampling(module, args.seed, args.task), **{k: v for k, v in given.items() if v is not None})


def run(args) -> int:
    from rmvae.evaluation import load_checkpoint

    module = load_checkpoint(args.checkpoint)
    _check_options(args, module)
    result = _generate(args, module)
    written = _write_outputs(args, module, result)
    print(f"{args.task}: {result.n_measures} measures, {int(result.generated.sum())} voice-measures generated → "
          + ", ".join(written))
    return 0


def _check_options(args, module) -> None:
    """Refuse, before anything is generated, the options this checkpoint cannot honour."""
    from rmvae.errors import UserError

    if args.program is not None and (len(args.program) != module.n_voices
                                     or not all(0 <= p <= 127 for p in args.program)):
        raise UserError(f"--program needs {module.n_voices} General MIDI programs (0–127), one per voice; "
                        f"got {' '.join(map(str, args.program))}")
    if args.tempo is not None and not args.tempo > 0:
        raise UserError(f"--tempo must be a positive number of beats per minute; got {args.tempo}")
    if args.seed_measures is not None and args.seed_measures < 1:
        raise UserError(f"--seed-measures must be at least 1; got {args.seed_measures}")


def _generate(args, module):
    """The task's result (:class:`rmvae.tasks.Piece`): read its inputs, then run it; a task's own
    refusal becomes a one-line user error."""
    from rmvae.errors import UserError
    from rmvae.tasks import Composer, TaskError, parse_mask

    try:
        composer = Composer(module, sampling_of(args, module))
        if args.task == "noise":
            return composer.noise(args.noise, args.measures, args.measures)
        if args.task == "harmonize":
            melody = read_piece(args, module, args.input, args.chorale, one_voice=True)
            return composer.harmonize(melody.measures, args.melody_voice, melody.key_shift, melody.tempo)
        if args.task == "interpolate":
            if not (args.input_b or args.chorale_b):
                raise UserError("--task interpolate needs a second piece: --input-b MIDI or --chorale-b ID")
            piece_a = read_piece(args, module, args.input, args.chorale)
            piece_b = read_piece(args, module, args.input_b, args.chorale_b)
            return composer.interpolate(piece_a, piece_b)
        piece = read_piece(args, module, args.input, args.chorale)
        if args.task == "complete":
            return composer.complete(piece, args.measures)
        if args.task == "fill":
            if not args.voices:
                raise UserError("--task fill needs --voices (the voices to generate, 0 = soprano)")
            return composer.fill(piece, args.voices)
        if args.task == "redo":
            return composer.redo(piece)
        if not args.mask:  # inpaint
            raise UserError("--task inpaint needs --mask (see rmvae generate --help)")
        return composer.inpaint(piece, parse_mask(args.mask, piece.n_measures, module.n_voices))
    except TaskError as error:
        raise UserError(str(error)) from None


def _write_outputs(args, module, result) -> list[str]:
    """Write OUT (.mid), its pianoroll OUT.png and with ``--audio`` OUT.wav; returns what was written."""
    import numpy as np

    from rmvae.render import midi_to_wav, notes_to_midi, pianoroll_png

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = module.encoding.to_notes(result.measures, module.pitch_range)
    tempo = args.tempo or result.tempo
    notes_to_midi(notes, out, tempo=tempo, programs=args.program, key_shift=result.key_shift, n_voices=module.n_voices)
    seed_measures = int(np.argmax(result.generated.any(axis=1))) if result.generated.any() else 0
    if args.task in ("complete", "noise"):
        title = f"{args.task}: {seed_measures} seed + {result.n_measures - seed_measures} generated measures"
    else:
        title = f"{args.task}: generated voice-measures outlined"
    pianoroll_png(notes, out.with_suffix(".png"), module.n_voices,
                  seed_measures=seed_measures if args.task in ("complete", "noise") else 0, title=title)
    written = [str(out), str(out.with_suffix(".png"))]
    if args.audio:
        synth = midi_to_wav(out, out.with_suffix(".wav"))
        written.append(f"{out.with_suffix('.wav')} ({synth})")
    return written
