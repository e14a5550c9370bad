"""Write the kiosk's three short cue sounds as small WAV files (stdlib only).

Layer: `kiosk` build tool. Run `python -m kiosk.sounds.make_sounds`; the files
are committed, so this is only needed to change them.

success: two rising notes; failure: one low buzz; warning: three short beeps.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RATE = 16_000
HERE = Path(__file__).parent

# Each cue as (frequency in Hz, seconds) notes; 0 Hz is silence.
CUES: dict[str, list[tuple[float, float]]] = {
    "success": [(660.0, 0.09), (0.0, 0.02), (990.0, 0.14)],
    "failure": [(220.0, 0.32)],
    "warning": [(880.0, 0.07), (0.0, 0.05), (880.0, 0.07), (0.0, 0.05), (880.0, 0.07)],
}


def samples(notes: list[tuple[float, float]]) -> bytes:
    """Signed 16-bit mono samples, each note faded in and out to avoid clicks."""
    out = bytearray()
    for frequency, seconds in notes:
        count = int(RATE * seconds)
        for n in range(count):
            fade = min(1.0, n / 160, (count - n) / 160)
            value = 0.0
            if frequency:
                value = math.sin(2 * math.pi * frequency * n / RATE)
            out += struct.pack("<h", int(value * fade * 12_000))
    return bytes(out)


def main() -> None:
    """Write every cue beside this file."""
    for name, notes in CUES.items():
        with wave.open(str(HERE / f"{name}.wav"), "wb") as sound:
            sound.setnchannels(1)
            sound.setsampwidth(2)
            sound.setframerate(RATE)
            sound.writeframes(samples(notes))


if __name__ == "__main__":
    main()
