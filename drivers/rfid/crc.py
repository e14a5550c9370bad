"""The three CRC-16 variants RFID library equipment uses.

Layer: `drivers`. Imports only the standard library; no I/O.
Never imports `ils` or `kiosk`.

All three use the CCITT polynomial x^16 + x^12 + x^5 + 1 and start from 0xFFFF;
they differ in bit order and final XOR:

- ISO 28560-3 (Danish data model) basic block: CRC-16/CCITT-FALSE, MSB-first
  bits, no final XOR (the DDM's own test vector "RFID tag data model" -> 0x1AEE).
- 3M 810 frames: the same, then XOR 0xFFFF.
- Feig ISO host frames: the reflected form (polynomial 0x8408, LSB-first bits),
  no final XOR, as Feig's manuals give it.
"""

from __future__ import annotations

_CCITT = 0x1021
_CCITT_REFLECTED = 0x8408


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """Return CRC-16/CCITT-FALSE of `data` (the ISO 28560-3 basic-block CRC)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _CCITT) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def crc16_3m(data: bytes) -> int:
    """Return the 3M 810 frame CRC: CCITT-FALSE inverted (final XOR 0xFFFF)."""
    return crc16_ccitt_false(data) ^ 0xFFFF


def crc16_feig(data: bytes) -> int:
    """Return the Feig ISO host frame CRC: reflected CCITT, preset 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc >> 1) ^ _CCITT_REFLECTED) if crc & 1 else (crc >> 1)
    return crc
