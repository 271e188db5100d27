"""`rmvae band`: play one voice live (or from a MIDI file) while the model plays the band voices.

At each bar line the model reads the last n_measures (the player's notes quantised to the
sixteenth grid and its own output) and predicts the measure after next, so each prediction has
a whole measure to finish; if one is late the band repeats its last measure. The band joins
at measure 3 (index 2). Examples:

    rmvae band run/checkpoints/best.ckpt --input-port "USB Keyboard" --output-port "FLUID Synth" \\
        --voice 0 --tempo 90 --metronome --record session.mid
    rmvae band run/checkpoints/best.ckpt --player-file chorale.mid --voice 0 --headless --record out.mid

The checkpoint must be trained with --offset 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from rmvae.config import VOICE_NAMES
from rmvae.errors import UserError

OFFSET_MESSAGE = ("this checkpoint was trained with offset 1; the band player needs a model trained with "
                  "--offset 2 so each prediction has a whole measure to complete")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("checkpoint", help="a checkpoint trained with --offset 2")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input-port", nargs="?", const="", metavar="NAME",
                        help="play live from this MIDI input (no NAME: the first one)")
    source.add_argument("--player-file", metavar="MIDI",
                        help="a MIDI file plays the player's part (its voice --voice, or its only voice)")
    parser.add_argument("--output-port", nargs="?", const="", metavar="NAME",
                        help="sound the band on this MIDI output (no NAME: the first one)")
    parser.add_argument("--record", metavar="OUT.mid", help="write everything played (player and band) to a MIDI file")
    parser.add_argument("--voice", default="0", help="the voice the player plays: index or name (default 0, soprano)")
    parser.add_argument("--band-voices", nargs="+", metavar="V", help="voices the model plays (default: all others)")
    parser.add_argument("--tempo", type=float, help="quarter notes per minute (default: the player file's, else 100)")
    parser.add_argument("--instrument", action="append", default=[], metavar="VOICE=PROGRAM",
                        help="General MIDI program (0–127) of a voice, repeatable (default: 52, choir aahs)")
    parser.add_argument("--metronome", action="store_true", help="click every beat on the drum channel")
    parser.add_argument("--count-in", type=int, metavar="MEASURES",
                        help="measures of clicks before the first downbeat (default: 1 when live, else 0)")
    parser.add_argument("--measures", type=int, help="measures to play (default: the player file's length, "
                        "or until Ctrl-C when live)")
    parser.add_argument("--headless", action="store_true",
                        help="with --player-file: a simulated clock, as fast as possible; prints JSON statistics")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely pitches")
    parser.add_argument("--seed", type=int, help="seed of the sampling")
    parser.add_argument("--re-encode", action="store_true",
                        help="re-encode the whole window at every bar line instead of caching experts (slower)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the model (default 1: one measure gains little from more, "
                        "and spinning threads on a busy machine cost seconds)")
    parser.add_argument("--quiet", action="store_true", help="no per-measure progress lines")


def parse_voice(value: str, n_voices: int, what: str) -> int:
    """A voice index or name (soprano, alto, tenor, bass for four voices)."""
    names = list(VOICE_NAMES) if n_voices == len(VOICE_NAMES) else []
    if value.lower() in names:
        return names.index(value.lower())
    try:
        voice = int(value)
    except ValueError:
        raise UserError(f"{what} '{value}' is not a voice index" + (f" or one of {names}" if names else "")) from None
    if not 0 <= voice < n_voices:
        raise UserError(f"{what} {voice} is out of range: this model has {n_voices} voices, 0–{n_voices - 1}")
    return voice


def parse_programs(items: list[str], n_voices: int) -> list[int]:
    """``VOICE=PROGRAM`` items → a General MIDI program per voice."""
    from rmvae.render import CHOIR_AAHS

    programs = [CHOIR_AAHS] * n_voices
    for item in items:
        voice, sep, program = item.partition("=")
        if not sep:
            raise UserError(f"--instrument '{item}' must look like VOICE=PROGRAM, e.g. bass=32")
        try:
            number = int(program)
        except ValueError:
            number = -1
        if not 0 <= number <= 127:
            raise UserError(f"--instrument '{item}': the program must be a number 0–127")
        programs[parse_voice(voice, n_voices, "--instrument voice")] = number
    return programs


def load_checkpoint(path: str):
    """The trained module, refusing what the band cannot use (offset 1, the poly encoding)."""
    from rmvae.evaluation import load_checkpoint as load_trained

    module = load_trained(path)  # missing, corrupt or foreign files: one message each
    if module.config.data.offset != 2:
        raise UserError(OFFSET_MESSAGE if module.config.data.offset == 1 else
                        f"this checkpoint was trained with offset {module.config.data.offset}; the band needs offset 2")
    if not module.encoding.monophonic:
        raise UserError(f"this checkpoint uses the {module.encoding.name} encoding; the band player needs a mono model")
    return module


def run(args) -> int:
    import torch

    from rmvae.band import read_player_file

    if args.headless and not args.player_file:
        raise UserError("--headless needs --player-file: there is no live player without a clock")
    if args.headless and args.output_port is not None:
        raise UserError("--headless runs faster than real time and sounds nothing: drop --output-port (use --record)")
    if args.measures is not None and args.measures < 1:
        raise UserError(f"--measures {args.measures}: play at least one measure")
    if args.tempo is not None and args.tempo <= 0:
        raise UserError(f"--tempo {args.tempo} must be > 0")
    if args.temperature < 0:
        raise UserError(f"--temperature {args.temperature} must be ≥ 0")
    if args.threads < 1:
        raise UserError("--threads must be ≥ 1")
    if args.count_in is not None and args.count_in < 0:
        raise UserError("--count-in must be ≥ 0")

    module = load_checkpoint(args.checkpoint)
    n_voices, data = module.n_voices, module.config.data
    voice = parse_voice(args.voice, n_voices, "--voice")
    if args.band_voices:
        band_voices = sorted({parse_voice(v, n_voices, "--band-voices voice") for v in args.band_voices})
        if voice in band_voices:
            raise UserError(f"voice {voice} is the player's: it cannot also be a band voice")
    else:
        band_voices = [v for v in range(n_voices) if v != voice]
    if not band_voices:
        raise UserError("this model has a single voice: there is no band voice to play")
    programs = parse_programs(args.instrument, n_voices)

    score = player = None
    if args.player_file:
        player, score = read_player_file(args.player_file, voice, n_voices, data)
        tempo = args.tempo or score.tempo
        n_measures = args.measures or player.n_measures
    else:
        tempo = args.tempo or 100.0
        n_measures = args.measures

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _play(args, module, player, score, voice, band_voices, programs,
                     tempo, n_measures)
    finally:
        torch.set_num_threads(threads_before)


def _play(args, module, player, score, voice: int, band_voices: list[int], programs: list[int], tempo: float,
          n_measures: int | None) -> int:
    from rmvae.band import BandEngine, CachedPredictor, LivePlayer, NaivePredictor, RealClock, SimulatedClock
    from rmvae.band.ports import MidiOutput, open_input, open_output
    from rmvae.render import notes_to_midi

    n_voices, pitch_range, data = module.n_voices, module.pitch_range, module.config.data
    key_shift = score.key_shift if score is not None else 0
    predictor_class = NaivePredictor if args.re_encode else CachedPredictor
    predictor = predictor_class(module.model, data.n_measures, band_voices, temperature=args.temperature,
                                top_k=args.top_k, seed=args.seed, offset=data.offset)
    output = None
    input_port = None
    if args.output_port is not None:
        output = MidiOutput(open_output(args.output_port or None), programs, key_shift=key_shift)
    if player is None:
        player = LivePlayer(voice, tempo, thru=output.thru(voice) if output is not None else None)
        try:
            input_port = open_input(args.input_port or None, callback=player.handle)
        except UserError:
            if output is not None:
                output.close()
            raise

    def progress(measure: int, status: str) -> None:
        print(f"measure {measure + 1:4d}  band {status:9s}  late so far {engine.report.late}", file=sys.stderr)

    if output is None and not args.headless:
        print("rmvae band: no --output-port: the band plays silently" + ("" if args.record else " and nothing is recorded"),
              file=sys.stderr)
    count_in = args.count_in if args.count_in is not None else (1 if input_port is not None else 0)
    clock = SimulatedClock() if args.headless else RealClock()
    engine = BandEngine(predictor, clock, player, n_voices, voice, band_voices, pitch_range, tempo,
                        n_measures=n_measures, output=output, metronome=args.metronome,
                        lead_in=0.0 if args.headless else 0.5, count_in=count_in,
                        on_measure=None if (args.quiet or args.headless) else progress)
    try:
        report = engine.run()
    finally:
        if input_port is not None:
            input_port.close()
    summary = report.summary()
    if args.record:
        notes = engine.played_notes()
        notes_to_midi(notes, args.record, tempo=tempo, programs=programs, key_shift=key_shift, n_voices=n_voices,
                      key=score.key_number if score is not None else None)
        summary["record"] = str(args.record)
    print(json.dumps(summary))
    return 0
