"""The site's barcode pipeline: Luhn, symbology, Codabar, transforms,
classification, and configuration errors that name the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.barcode.config import load_scanners, parse_scanners
from drivers.barcode.hid import HidScannerSettings
from drivers.barcode.pipeline import (
    AcceptedScan,
    BarcodePipeline,
    RefusedScan,
    ScannerConfigError,
    luhn_valid,
)
from drivers.barcode.serial_scanner import SerialScanner
from drivers.barcode.symbology import split_aim, strip_codabar
from drivers.events import BarcodeRejected, BarcodeScanned
from tests.drivers.conftest import FIXED_TIME

REPO = Path(__file__).resolve().parents[2]

# Luhn sums worked by hand (check digit last; every second digit from the
# right doubled, 9 taken from doubles above 9):
# 30234000517861: 1+3+8+5+1+1+0+0+0+8+3+4+0+6 = 40
# 33191000105864: 4+3+8+1+0+2+0+0+0+2+9+2+3+6 = 40
# 39999000123453: 3+1+4+6+2+2+0+0+0+9+9+9+9+6 = 60
# 29999000123455: 5+1+4+6+2+2+0+0+0+9+9+9+9+4 = 60
VALID_14 = ["30234000517861", "33191000105864", "39999000123453", "29999000123455"]


def accepted(result: AcceptedScan | RefusedScan) -> AcceptedScan:
    assert isinstance(result, AcceptedScan), result
    return result


@pytest.mark.parametrize("barcode", VALID_14)
def test_luhn_accepts_barcodes_checked_by_hand(barcode: str) -> None:
    """Library barcodes whose check digit was verified by hand pass the check."""
    assert luhn_valid(barcode)


@pytest.mark.parametrize(
    "barcode", ["30234000517862", "33191000105865", "39999000123435", "3999900012345X"]
)
def test_luhn_refuses_a_wrong_check_digit_or_swapped_digits(barcode: str) -> None:
    """A changed check digit, two swapped digits, or a letter fail the check."""
    assert not luhn_valid(barcode)


@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_exactly_one_check_digit_completes_any_13_digits(body: str) -> None:
    """For any 13 digits, exactly one of the ten check digits passes Luhn."""
    assert 1 == sum(luhn_valid(body + digit) for digit in "0123456789")


def test_aim_identifier_is_split_off_and_codabar_ends_removed() -> None:
    """ "]F0" is reported as the symbology and Codabar's A...B are removed."""
    assert ("]F0", "A39999000123453B") == split_aim("]F0A39999000123453B")
    assert (None, "39999000123453") == split_aim("39999000123453")
    assert "39999000123453" == strip_codabar("A39999000123453B", "]F0")
    assert "1234" == strip_codabar("c1234d", "]F0")


def test_codabar_ends_without_an_identifier_are_removed_only_from_library_codes() -> (
    None
):
    """Without an AIM identifier, only A-D around exactly 14 digits are removed, so
    a short code like A1234B and a Code 39 "]A0" code are left alone."""
    assert "39999000123453" == strip_codabar("A39999000123453B", None)
    assert "A1234B" == strip_codabar("A1234B", None)
    assert "A39999000123453B" == strip_codabar("A39999000123453B", "]A0")


def test_pipeline_strips_identifier_codabar_and_whitespace_then_classifies() -> None:
    """A Codabar scan with its identifier, Codabar ends and a stray space comes out
    as the bare item barcode, with the symbology reported."""
    pipeline = BarcodePipeline(item_pattern=re.compile(r"^3\d{13}$"))

    result = accepted(pipeline.process(" ]F0A39999000123453B\t"))

    assert "39999000123453" == result.barcode
    assert "item" == result.kind
    assert "]F0" == result.symbology
    assert " ]F0A39999000123453B\t" == result.raw


def test_pipeline_refuses_a_bad_luhn_digit_but_lets_other_lengths_through() -> None:
    """With luhn on, a 14-digit barcode with a wrong check digit is refused with
    a reason; a 5-digit barcode is not checked."""
    pipeline = BarcodePipeline(luhn=True)

    refused = pipeline.process("30234000517862")
    assert isinstance(refused, RefusedScan)
    assert "check digit" in refused.reason
    assert "12345" == accepted(pipeline.process("12345")).barcode
    assert "30234000517861" == accepted(pipeline.process("30234000517861")).barcode


def test_pipeline_from_toml_runs_transforms_in_order_and_patron_wins() -> None:
    """Transforms from a TOML table run in the order given, and a barcode both
    patterns match counts as a patron."""
    table = tomllib.loads(
        """
        patron_pattern = '^P'
        item_pattern = '^P|^3'
        transforms = [
            { strip_prefix = "10" },
            { case = "upper" },
            { replace = '-', with = "" },
            { strip_suffix = "X" },
        ]
        """
    )
    pipeline = BarcodePipeline.from_config(table)

    assert "P12AB" == accepted(pipeline.process("10p12-ab-x")).barcode
    assert "patron" == accepted(pipeline.process("p1")).kind
    assert "item" == accepted(pipeline.process("3-1")).kind
    assert "unknown" == accepted(pipeline.process("99")).kind


def test_a_scan_that_is_only_framing_is_refused() -> None:
    """A scan that is empty after trimming is refused rather than looked up."""
    assert isinstance(BarcodePipeline().process(" \r\n"), RefusedScan)


def test_pipeline_events_carry_device_time_and_symbology() -> None:
    """An accepted scan becomes BarcodeScanned and a refused one BarcodeRejected,
    both naming the device and the raw scan."""
    pipeline = BarcodePipeline(luhn=True)

    scanned = pipeline.event("]C130234000517861", device="desk", at=FIXED_TIME)
    rejected = pipeline.event("30234000517862", device="desk", at=FIXED_TIME)

    assert (
        BarcodeScanned(
            device="desk",
            barcode="30234000517861",
            kind="unknown",
            raw="]C130234000517861",
            at=FIXED_TIME,
            symbology="]C1",
        )
        == scanned
    )
    assert isinstance(rejected, BarcodeRejected)
    assert ("desk", "30234000517862") == (rejected.device, rejected.raw)


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"lunh": True}, "pipeline.lunh", "unknown key"),
        ({"luhn": "yes"}, "pipeline.luhn", "true or false"),
        ({"item_pattern": "^3[0-9"}, "pipeline.item_pattern", "regular expression"),
        ({"transforms": {"case": "upper"}}, "pipeline.transforms", "array"),
        (
            {"transforms": [{"case": "upper"}, {"replace": "("}]},
            "pipeline.transforms[1].replace",
            "regular expression",
        ),
        ({"transforms": [{"case": "title"}]}, "pipeline.transforms[0].case", "upper"),
        ({"transforms": [{"with": "x"}]}, "pipeline.transforms[0]", "exactly one"),
        (
            {"transforms": [{"replace": "a", "with": "\\2"}]},
            "pipeline.transforms[0].with",
            "bad replacement",
        ),
        (
            {"transforms": [{"case": "upper", "with": "x"}]},
            "pipeline.transforms[0].with",
            "only goes with replace",
        ),
    ],
)
def test_pipeline_config_errors_name_the_key_and_problem(
    table: dict[str, object], key: str, problem: str
) -> None:
    """Each wrong setting is refused with the file, the key and what is wrong."""
    with pytest.raises(ScannerConfigError) as caught:
        BarcodePipeline.from_config(table, source="scanners.toml")

    assert key == caught.value.key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"scanners.toml: {key}: ")


def test_example_scanners_file_loads_with_the_site_pipeline() -> None:
    """config/scanners.toml loads: one HID and one serial scanner, both using the
    site pipeline, the serial suffix read as CR LF."""
    hid, serial_scanner = load_scanners(REPO / "config" / "scanners.toml")

    assert isinstance(hid, HidScannerSettings)
    assert isinstance(serial_scanner, SerialScanner)
    assert b"\r\n" == serial_scanner.framing.suffix
    assert "item" == accepted(hid.pipeline.process("3999-9000-1234-53")).kind
    assert isinstance(serial_scanner.pipeline.process("29999000123454"), RefusedScan)


def test_scanner_file_errors_name_the_scanner_and_key() -> None:
    """A wrong kind, a duplicated name or a bad key inside a scanner's own
    pipeline is reported with the scanner's index."""
    with pytest.raises(ScannerConfigError, match=r"^f.toml: scanner\[0\]\.kind: "):
        parse_scanners({"scanner": [{"name": "a", "kind": "usb"}]}, source="f.toml")
    duplicate = {"name": "a", "kind": "serial", "url": "loop://"}
    with pytest.raises(ScannerConfigError, match=r"scanner\[1\]\.name: 'a' is used"):
        parse_scanners({"scanner": [duplicate, duplicate]})
    bad = {"name": "a", "kind": "hid", "path": "/x", "pipeline": {"trim": 1}}
    with pytest.raises(ScannerConfigError, match=r"scanner\[0\]\.pipeline\.trim: "):
        parse_scanners({"scanner": [bad]})
    with pytest.raises(ScannerConfigError, match=r"scanner\[0\]\.terminators\[0\]"):
        parse_scanners(
            {
                "scanner": [
                    {"name": "a", "kind": "hid", "path": "/x", "terminators": ["ENTER"]}
                ]
            }
        )


def test_a_file_that_is_not_toml_is_reported_with_its_name(tmp_path: Path) -> None:
    """Broken TOML is refused with the file's name, not a bare parser error."""
    path = tmp_path / "scanners.toml"
    path.write_text("[[scanner]\n")

    with pytest.raises(ScannerConfigError, match=r"scanners\.toml: .*not valid TOML"):
        load_scanners(path)


def test_pattern_repeating_a_repetition_is_refused_at_load() -> None:
    """`^(\\d+)+$` (which backtracks for minutes on 30 digits and a letter) is
    refused with its key; a repeated fixed-width group is fine."""
    with pytest.raises(ScannerConfigError) as caught:
        BarcodePipeline.from_config({"item_pattern": r"^(\d+)+$"}, source="s.toml")

    assert str(caught.value).startswith(
        "s.toml: pipeline.item_pattern: '^(\\\\d+)+$' repeats a repetition"
    )
    pipeline = BarcodePipeline.from_config({"item_pattern": r"^(\d{4}-)+\d+$"})
    assert "item" == pipeline.classify("1234-5678-9")


def test_scans_longer_than_64_characters_are_refused_before_matching() -> None:
    """A 65-character scan is refused without running the site's patterns; 64
    characters still go through."""
    pipeline = BarcodePipeline.from_config({"item_pattern": "^9"})

    refused = pipeline.process("9" * 65)
    accepted = pipeline.process("9" * 64)

    assert isinstance(refused, RefusedScan)
    assert "longer than 64 characters; no library barcode is" == refused.reason
    assert isinstance(accepted, AcceptedScan)
    assert "item" == accepted.kind
