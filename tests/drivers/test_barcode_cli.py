"""`ils scanner check` and `ils scanner try` on the shipped scanners file and on
broken ones, through click's runner (the same command `ils` loads)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from drivers.barcode.cli import scanner
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "config" / "scanners.toml"


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(scanner, list(args), input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_try_shows_what_each_scan_becomes() -> None:
    """An item barcode stays as it is, a patron barcode typed with dashes and
    spaces is cleaned, and a wrong check digit is refused (exit status 1)."""
    code, output = run(
        "try",
        "--config",
        str(SHIPPED),
        "31234000000016",
        " 2123-4000-0000-18 ",
        "31234000000015",
    )

    assert 1 == code
    assert [
        "'31234000000016' -> '31234000000016' (item)",
        "' 2123-4000-0000-18 ' -> '21234000000018' (patron)",
        "'31234000000015' -> refused: the check digit of a 14-digit barcode is "
        "wrong (Luhn)",
    ] == output.splitlines()


def test_try_reads_standard_input_and_a_scanners_own_pipeline(tmp_path: Path) -> None:
    """Without TEXT each input line is tried; --scanner picks that scanner's own
    pipeline over the site's."""
    config = tmp_path / "scanners.toml"
    config.write_text(
        "[pipeline]\n"
        "item_pattern = '^3'\n"
        "[[scanner]]\n"
        'name = "desk"\n'
        'kind = "serial"\n'
        'url = "loop://"\n'
        "[scanner.pipeline]\n"
        'transforms = [{ strip_prefix = "X" }]\n'
        "item_pattern = '^3'\n"
    )

    site_code, site = run("try", "--config", str(config), stdin="X31\n")
    desk_code, desk = run(
        "try", "--config", str(config), "--scanner", "desk", stdin="X31\n"
    )

    assert (0, "'X31' -> 'X31' (unknown)\n") == (site_code, site)
    assert (0, "'X31' -> '31' (item)\n") == (desk_code, desk)


def test_check_lists_the_scanners_counting_from_zero() -> None:
    """`check` says the file is fine and lists scanner[0] and scanner[1]."""
    code, output = run("check", "--config", str(SHIPPED))

    assert 0 == code
    lines = output.splitlines()
    assert f"{SHIPPED}: ok, 2 scanner(s)" == lines[0]
    assert lines[1].startswith("  scanner[0] 'kiosk-hid': keyboard wedge, path ")
    assert lines[2].startswith("  scanner[1] 'kiosk-serial': serial, /dev/serial/")


def test_unusable_files_get_one_line_naming_the_file(tmp_path: Path) -> None:
    """A missing file, a directory, non-UTF-8 bytes and a bad key each give one
    line naming the file, never a traceback."""
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"# caf\xe9\n")
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text('[[scanner]]\nname = "a"\nkind = "usb"\n')

    outputs = {
        name: run("check", "--config", str(path))
        for name, path in [
            ("missing", tmp_path / "none.toml"),
            ("directory", tmp_path),
            ("latin1", latin1),
            ("bad key", bad_key),
        ]
    }

    assert {
        "missing": (1, f"Error: {tmp_path / 'none.toml'}: (file): no such file\n"),
        "directory": (1, f"Error: {tmp_path}: (file): is a directory, not a file\n"),
        "latin1": (
            1,
            f"Error: {latin1}: (file): not UTF-8 text (byte 5: invalid "
            "continuation byte)\n",
        ),
        "bad key": (
            1,
            f'Error: {bad_key}: scanner[0].kind: must be "serial" or "hid", '
            "not 'usb'\n",
        ),
    } == outputs


def test_try_with_an_unknown_scanner_names_the_known_ones() -> None:
    """--scanner with a name not in the file lists the names that are."""
    code, output = run("try", "--config", str(SHIPPED), "--scanner", "nope", "1")

    assert 1 == code
    assert "no scanner named 'nope' (known: 'kiosk-hid', 'kiosk-serial')" in output
