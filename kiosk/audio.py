"""Audio cues: success, failure and warning, at a configured volume.

Layer: `kiosk` (Kivy's SoundLoader, imported only when a sound is first
played; never `ils`). A kiosk without a sound device (or a test run
offscreen) plays nothing and carries on; the cue chosen is still recorded in
`played`, which is what the tests check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.logger import Logger

from .config import AudioSection
from .model import Cue

SOUNDS = Path(__file__).with_name("sounds")

log = Logger()


class AudioCues:
    """Plays the WAV file of each cue; silently does nothing without audio."""

    def __init__(self, settings: AudioSection) -> None:
        self.enabled = settings.enabled
        self.volume = settings.volume
        #: Every cue asked for, in order (whether or not a sound came out).
        self.played: list[Cue] = []
        self._sounds: dict[Cue, Any] = {}
        self._loaded = False

    def play(self, cue: Cue) -> None:
        """Play `cue` (or record it only, when audio is off or absent)."""
        self.played.append(cue)
        if not self.enabled or self.volume <= 0:
            return
        sound = self._sound(cue)
        if sound is None:
            return
        sound.volume = self.volume
        sound.stop()
        sound.play()

    def _sound(self, cue: Cue) -> Any:
        if not self._loaded:
            self._loaded = True
            try:
                from kivy.core.audio import SoundLoader  # noqa: PLC0415

                for each in Cue:
                    self._sounds[each] = SoundLoader.load(str(SOUNDS / f"{each}.wav"))
            # Any failure of the audio system means "no sound", never a crash.
            except Exception as error:
                log.warn("no audio: {error}", error=str(error))
        return self._sounds.get(cue)
