"""MIDI ports (mido with the python-rtmidi backend): opening them with clear errors, and the output sink.

On a machine without sound hardware python-rtmidi cannot open the ALSA sequencer and raises
an ``RtMidiError`` (an ``OSError``) as soon as ports are listed; that, no ports at all, and an
unknown port name each become one :class:`~rmvae.errors.UserError` line.
"""
from __future__ import annotations

import threading

from rmvae.errors import UserError

HEADLESS_HINT = "to play without a MIDI keyboard use --player-file FILE --headless"
DRUM_CHANNEL = 9  # General MIDI percussion (0-based)
CLICK_DOWNBEAT, CLICK_BEAT = 76, 77  # GM hi / low wood block


def port_names(direction: str) -> list[str]:
    """Names of the MIDI ``"input"`` or ``"output"`` ports.

    Raises:
        UserError: the MIDI system cannot be opened (no ALSA sequencer, no rtmidi backend).
    """
    import mido

    lister = mido.get_input_names if direction == "input" else mido.get_output_names
    try:
        return list(lister())
    except (OSError, ImportError, RuntimeError) as error:  # rtmidi.RtMidiError is an OSError
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot open the MIDI system ({detail}); this machine may have no MIDI or sound "
                        f"hardware: {HEADLESS_HINT}") from None


def _choose(name: str | None, direction: str) -> str:
    names = port_names(direction)
    if not names:
        raise UserError(f"no MIDI {direction} ports found; connect a MIDI device, or {HEADLESS_HINT}")
    if name is None:
        return names[0]
    if name in names:
        return name
    matches = [n for n in names if n.startswith(name)]  # rtmidi appends client:port numbers
    if len(matches) == 1:
        return matches[0]
    raise UserError(f"no MIDI {direction} port named '{name}'; available: " + ", ".join(repr(n) for n in names))


def open_input(name: str | None, callback):
    """Open an input port (the first one if ``name`` is None) that calls ``callback(message)``."""
    import mido

    chosen = _choose(name, "input")
    try:
        return mido.open_input(chosen, callback=callback)
    except (OSError, IOError) as error:
        raise UserError(f"cannot open MIDI input '{chosen}' ({error})") from None


def open_output(name: str | None):
    """Open an output port (the first one if ``name`` is None)."""
    import mido

    chosen = _choose(name, "output")
    try:
        return mido.open_output(chosen)
    except (OSError, IOError) as error:
        raise UserError(f"cannot open MIDI output '{chosen}' ({error})") from None


def voice_channel(voice: int) -> int:
    """MIDI channel of a voice: its index, skipping the drum channel."""
    return voice if voice < DRUM_CHANNEL else voice + 1


class MidiOutput:
    """Sends the band (and the player file, and the metronome) to a mido output port.

    Args:
        port: an open mido output port.
        programs: General MIDI program per voice.
        key_shift: semitones the model's pitches are shifted by (the player file was transposed
            to C major / A minor); subtracted on the way out so the music sounds in its key.
        velocity: note velocity.
    """

    def __init__(self, port, programs, key_shift: int = 0, velocity: int = 90):
        import mido

        self.mido = mido
        self.port = port
        self.key_shift = key_shift
        self.velocity = velocity
        self._lock = threading.Lock()  # the clock thread and mido's input thread (thru) both send
        self._click = None
        for voice, program in enumerate(programs):
            self.send(mido.Message("program_change", channel=voice_channel(voice), program=int(program)))

    def send(self, message) -> None:
        with self._lock:
            self.port.send(message)

    def note_on(self, voice: int, pitch: int) -> None:
        self.send(self.mido.Message("note_on", channel=voice_channel(voice),
                                    note=int(min(127, max(0, pitch - self.key_shift))), velocity=self.velocity))

    def note_off(self, voice: int, pitch: int) -> None:
        self.send(self.mido.Message("note_off", channel=voice_channel(voice),
                                    note=int(min(127, max(0, pitch - self.key_shift)))))

    def click(self, downbeat: bool) -> None:
        if self._click is not None:
            self.send(self.mido.Message("note_off", channel=DRUM_CHANNEL, note=self._click))
        self._click = CLICK_DOWNBEAT if downbeat else CLICK_BEAT
        self.send(self.mido.Message("note_on", channel=DRUM_CHANNEL, note=self._click, velocity=100 if downbeat else 70))

    def thru(self, voice: int):
        """A callback that echoes the player's notes on the player's channel."""
        def echo(message) -> None:
            if message.type in ("note_on", "note_off"):
                self.send(message.copy(channel=voice_channel(voice)))
        return echo

    def close(self) -> None:
        if self._click is not None:
            self.send(self.mido.Message("note_off", channel=DRUM_CHANNEL, note=self._click))
        for channel in range(16):
            self.send(self.mido.Message("control_change", channel=channel, control=123, value=0))  # all notes off
        self.port.close()
