"""Key codes to characters for keyboard-wedge scanners (US layout).

Layer: `drivers`. Imports only python-evdev's key codes.

A scanner types its barcode as key presses, and key codes name key positions,
not characters: the scanner's own layout (almost always US) decides which
character each position means. Each entry is (unshifted, shifted).
"""

from __future__ import annotations

from collections.abc import Mapping

from evdev import ecodes

__all__ = ["US_KEYMAP", "Keymap"]

Keymap = Mapping[int, tuple[str, str]]
"""A key code to its (unshifted, shifted) characters."""


def _us_keymap() -> dict[int, tuple[str, str]]:
    keymap: dict[int, tuple[str, str]] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        keymap[ecodes.ecodes[f"KEY_{letter.upper()}"]] = (letter, letter.upper())
    for digit, shifted in zip("1234567890", "!@#$%^&*()", strict=True):
        keymap[ecodes.ecodes[f"KEY_{digit}"]] = (digit, shifted)
        keymap[ecodes.ecodes[f"KEY_KP{digit}"]] = (digit, digit)
    punctuation = {
        "KEY_MINUS": ("-", "_"),
        "KEY_EQUAL": ("=", "+"),
        "KEY_LEFTBRACE": ("[", "{"),
        "KEY_RIGHTBRACE": ("]", "}"),
        "KEY_SEMICOLON": (";", ":"),
        "KEY_APOSTROPHE": ("'", '"'),
        "KEY_GRAVE": ("`", "~"),
        "KEY_BACKSLASH": ("\\", "|"),
        "KEY_COMMA": (",", "<"),
        "KEY_DOT": (".", ">"),
        "KEY_SLASH": ("/", "?"),
        "KEY_SPACE": (" ", " "),
        "KEY_TAB": ("\t", "\t"),
        "KEY_KPMINUS": ("-", "-"),
        "KEY_KPPLUS": ("+", "+"),
        "KEY_KPASTERISK": ("*", "*"),
        "KEY_KPSLASH": ("/", "/"),
        "KEY_KPDOT": (".", "."),
    }
    for name, pair in punctuation.items():
        keymap[ecodes.ecodes[name]] = pair
    return keymap


US_KEYMAP: Keymap = _us_keymap()
"""The US layout, which nearly every scanner uses unless programmed otherwise."""
