"""A long mutation fuzz run of the SIP2 codec: `Framer`, `decode` and `encode`.

Seeds are the REQ rows of ../shared/sip2/samples.tsv when that file is present,
else a built-in set of frames. Each input is a seed changed by one to four
mutations (bit flips, byte insertions and deletions, field shuffles,
truncations, splices of two frames). It is fed to a `Framer` in random chunks
with several frames per stream, and every frame is decoded in a random
encoding; a message that decodes is encoded again with random output options.

Only the codec's own `ProtocolError` family may come out of `decode`, and
nothing may come out of `encode` of a decoded message. Anything else is a
failure: it is printed with the input (repr) and the run exits with status 1.

Run from the repository root:

    .venv/bin/python bench/fuzz.py --seconds 300 --seed 1
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sip2server.protocol import (
    DelimiterPolicy,
    FieldOrder,
    Framer,
    ProtocolError,
    decode,
    encode,
)

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared/sip2/samples.tsv"

# Used when ../shared is absent: one frame of each kind a kiosk or gate sends,
# some with error detection, in the liberal shapes real clients use.
BUILT_IN_SEEDS = [
    b"9300CNkiosk1|COsecret|CPNORTH|AY0AZF1A2",
    b"9900302.00AY1AZFCA5",
    b"9900802.00|AY1AZFC24",
    b"23001" + b"20261204    151000" + b"AOCITY|AA21234000000018|AC|AD1234|",
    b"63001"
    + b"20261204    151000"
    + b"Y         AOCITY|AA21234000000018|BP00001|BQ00005",
    b"11YN" + b"20261204    151000" + b" " * 18 + b"AOCITY|AA21234000000018|AB3123",
    b"09N" + b"20261204    151000" * 2 + b"APNORTH|AOCITY|AB31234000000016|AC|",
    b"17" + b"20261204    151000" + b"AOCITY|AB31234000000016|AY2AZ",
    b"35" + b"20261204   Z151000" + b"AOCITY|AA21234000000018|",
    b"37" + b"20261204    151000" + b"0100GBPBV1.00|AOCITY|AA21234000000018|",
    b"15+" + b"20261204    151000" + b"AOCITY|AA21234000000018|AB31234000000016|",
    b"29NN" + b"20261204    151000" * 2 + b"AOCITY|AA2123|AB3123|",
    b"65" + b"20261204    151000" + b"AOCITY|AA21234000000018|",
    b"19" + b"20261204    151000" + b"AOCITY|AB31234000000016|CHfragile|",
    b"97AZFEF5",
    b"\x16\x03\x01\x00\x05hello",
]

ENCODINGS = ["utf-8", "latin-1", "cp850", "ascii"]


def load_seeds() -> tuple[list[bytes], str]:
    """The REQ rows of samples.tsv, or the built-in frames, and where they came from."""
    if not SAMPLES.is_file():
        return BUILT_IN_SEEDS, "built-in frames (../shared/sip2/samples.tsv absent)"
    seeds = []
    for line in SAMPLES.read_text("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) > 2 and columns[1] == "REQ":
            seeds.append(columns[2].encode("utf-8"))
    return seeds, f"{len(seeds)} REQ rows of {SAMPLES}"


# --- mutations -----------------------------------------------------------------------


def flip_bits(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Flip one to eight random bits."""
    if not data:
        return data
    changed = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        changed[rng.randrange(len(changed))] ^= 1 << rng.randrange(8)
    return bytes(changed)


def insert_bytes(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Insert a few random or SIP2-significant bytes at one place."""
    alphabet = [b"|", b"\r", b"\n", b"AY", b"AZ", b"\x00", b"\xff", b"\xc3", b"Y", b" "]
    if rng.random() < 0.5:
        piece = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    else:
        piece = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
    at = rng.randint(0, len(data))
    return data[:at] + piece + data[at:]


def delete_bytes(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Delete a run of one to eight bytes."""
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 8) :]


def shuffle_fields(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Shuffle the `|`-separated pieces after the first one."""
    pieces = data.split(b"|")
    rest = pieces[1:]
    rng.shuffle(rest)
    return b"|".join([pieces[0], *rest])


def truncate(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Cut the frame short."""
    return data[: rng.randint(0, len(data))]


def splice(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """The head of this frame glued to the tail of another."""
    other = rng.choice(seeds)
    return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]


MUTATIONS = [flip_bits, insert_bytes, delete_bytes, shuffle_fields, truncate, splice]


def mutate(rng: random.Random, seed: bytes, seeds: list[bytes]) -> bytes:
    """`seed` changed by one to four mutations."""
    data = seed
    for _ in range(rng.randint(1, 4)):
        data = rng.choice(MUTATIONS)(rng, data, seeds)
    return data


# --- one trial -----------------------------------------------------------------------


class Tally:
    """What the run has tried so far."""

    def __init__(self) -> None:
        self.inputs = 0
        self.frames = 0
        self.accepted = 0
        self.rejected = 0


def chunks(rng: random.Random, stream: bytes) -> list[bytes]:
    """`stream` cut at random places: byte by byte, in small pieces or whole."""
    style = rng.randrange(3)
    if style == 0:
        return [stream[index : index + 1] for index in range(len(stream))]
    if style == 1:
        points = sorted(rng.sample(range(len(stream) + 1), min(6, len(stream) + 1)))
        edges = [0, *points, len(stream)]
        return [stream[a:b] for a, b in itertools.pairwise(edges)]
    return [stream]


def trial(rng: random.Random, seeds: list[bytes], tally: Tally) -> None:
    """Frame, decode and re-encode one stream of one to three mutated frames."""
    frames = [mutate(rng, rng.choice(seeds), seeds) for _ in range(rng.randint(1, 3))]
    ending = rng.choice([b"\r", b"\r\n", b"\n"])
    stream = b"".join(frame + ending for frame in frames)
    tally.inputs += len(frames)

    framer = Framer(max_length=rng.choice([64, 256, 8192]))
    received = []
    for piece in chunks(rng, stream):
        received.extend(framer.feed(piece))

    # The raw mutated frames too: decode must cope without the framer's help.
    payloads = [frame.payload for frame in received] + frames
    for payload in payloads:
        tally.frames += 1
        encoding = rng.choice(ENCODINGS)
        try:
            decoded = decode(payload, encoding=encoding)
        except ProtocolError:
            tally.rejected += 1
            continue
        tally.accepted += 1
        encode(
            decoded.message,
            sequence=decoded.sequence,
            error_detection=decoded.sequence is not None,
            encoding=rng.choice(ENCODINGS),
            delimiter_policy=rng.choice(list(DelimiterPolicy)),
            field_order=rng.choice(list(FieldOrder)),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    arguments = parser.parse_args()

    seeds, origin = load_seeds()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"seeds: {origin}; random seed {arguments.seed}")

    tally = Tally()
    started = time.monotonic()
    deadline = started + arguments.seconds
    trials = 0
    while time.monotonic() < deadline:
        # A generator per trial, seeded from the run: any failure can be replayed.
        trial_seed = arguments.seed * 1_000_003 + trials
        rng = random.Random(trial_seed)
        trials += 1
        try:
            trial(rng, seeds, tally)
        except Exception:
            print(f"FAILURE in trial {trials - 1} (random.Random({trial_seed}))")
            replay = random.Random(trial_seed)
            frames = [
                mutate(replay, replay.choice(seeds), seeds)
                for _ in range(replay.randint(1, 3))
            ]
            for frame in frames:
                print(f"  input: {frame!r}")
            traceback.print_exc()
            return 1

    elapsed = time.monotonic() - started
    print(
        f"{tally.inputs:,} mutated frames in {trials:,} streams, "
        f"{tally.frames:,} decodes in {elapsed:.0f} s: "
        f"{tally.accepted:,} accepted, {tally.rejected:,} rejected with a "
        "ProtocolError, 0 failures"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
