"""The reader simulator's tags file and its command line.

The command-line test starts `python -m drivers.rfid.simulator` as a real
process on loopback, connects a driver to the URL it prints, and moves tags in
and out of the field through its standard input.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import serial

from drivers.rfid.emulation import SimulatedTag, TagField
from drivers.rfid.feig import FeigReader
from drivers.rfid.simulator import ReaderSimulator, TagsFileError, load_tags
from drivers.rfid.tags import BlockOrder, decode_basic_block
from drivers.rfid.three_m import ThreeM810Reader

REPO = Path(__file__).resolve().parents[2]
DEMO_TAGS = REPO / "drivers" / "rfid" / "demo-tags.toml"


def test_demo_tags_file_loads() -> None:
    """The shipped demo file gives the two parts of a set, a loaned item and a
    shelved one waiting out of the field."""
    loaded = load_tags(DEMO_TAGS)

    assert [
        ("E004010000000001", True, 0x07),
        ("E004010000000002", True, 0x07),
        ("E004010000000003", False, 0xC2),
        ("E004010000000004", False, 0x07),
    ] == [(tag.uid, present, tag.afi) for tag, present in loaded]
    third, _ = loaded[2]
    block, order = decode_basic_block(bytes(third.memory))
    assert ("31234000000024", BlockOrder.REVERSED) == (block.item_id, order)


def test_demo_tags_carry_the_demo_librarys_item_barcodes() -> None:
    """Every demo tag's item id is one of the first items `ils demo` creates,
    so lookups against the demo server find them."""
    from ils.demo import item_barcode  # noqa: PLC0415 - the demo library's rule

    ids = {
        decode_basic_block(bytes(tag.memory))[0].item_id
        for tag, _ in load_tags(DEMO_TAGS)
    }

    assert {"31234000000016", "31234000000024", "31234000000032"} == ids
    assert ids <= {item_barcode(serial) for serial in range(1, 4)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[tags]]\nuid = "E0"\n', "tags #1: key 'uid'"),
        ('[[tags]]\nuid = "E004010000000001"\nafi = 300\n', "key 'afi'"),
        ('[[tags]]\nuid = "E004010000000001"\ncolour = 1\n', "unknown key 'colour'"),
        ("[[tags]]\nitem_id = '1'\n", "missing key 'uid'"),
        (
            '[[tags]]\nuid = "E004010000000001"\nitem_id = "1"\nowner = "DK"\n',
            "PREFIX-LIBRARY",
        ),
        ("tags = [", "tags.toml"),
        (
            '[[tags]]\nuid = "E004010000000001"\nitem_id = "1"\nblocks = 0\n',
            "key 'blocks' must be 9-256 to hold the basic block, not 0",
        ),
        (
            '[[tags]]\nuid = "E004010000000001"\nblocks = 100000000\n',
            "key 'blocks' must be 1-256, not 100000000",
        ),
    ],
)
def test_bad_tags_files_name_file_entry_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each mistake in a tags file is reported with the file and the entry."""
    path = tmp_path / "tags.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(TagsFileError, match=message) as raised:
        load_tags(path)

    assert str(path) in str(raised.value)


def test_command_line_simulator_serves_and_moves_tags() -> None:
    """The CLI prints its URL, serves a driver, and takes `take`/`put` commands."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "drivers.rfid.simulator", "--protocol", "feig"),
            *("--listen", "127.0.0.1:0", "--tags", str(DEMO_TAGS)),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        banner = process.stdout.readline()
        assert banner.startswith("feig reader on socket://127.0.0.1:")
        port = serial.serial_for_url(banner.split()[-1], timeout=2)
        reader = FeigReader(port)

        assert ["E004010000000001", "E004010000000002"] == reader.inventory()

        process.stdin.write(
            "take E004010000000001\nput E004010000000003\nput E0040100000000FF\n"
        )
        process.stdin.flush()
        assert "take E004010000000001: ok\n" == process.stdout.readline()
        assert "put E004010000000003: ok\n" == process.stdout.readline()
        assert (
            "put E0040100000000FF: no such tag in the tags file (see `list`)\n"
            == process.stdout.readline()
        )
        assert ["E004010000000002", "E004010000000003"] == reader.inventory()
        port.close()

        process.stdin.write("quit\n")
        process.stdin.flush()
        assert 0 == process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()


def test_command_line_refuses_a_bad_tags_file(tmp_path: Path) -> None:
    """A bad tags file stops the CLI with status 2 and a message naming it."""
    path = tmp_path / "tags.toml"
    path.write_text('[[tags]]\nuid = "nope"\n', encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "drivers.rfid.simulator", "--tags", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )

    assert 2 == result.returncode
    assert f"error: {path}: tags #1: key 'uid'" in result.stderr


def test_3m810_is_accepted_as_the_3m_protocol_name() -> None:
    """The gate's spelling "3m810" names the same simulated 3M reader as "3m"."""
    field = TagField([SimulatedTag(uid="E004010000000001")])

    with ReaderSimulator(field, "3m810") as simulator:
        assert ["E004010000000001"] == ThreeM810Reader(
            simulator.open_stream()
        ).inventory()
