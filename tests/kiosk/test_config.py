"""The kiosk's configuration file: the shipped example loads, bad keys are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ils.results import REFUSAL_MESSAGES
from ils.results import Refusal as CoreRefusal
from kiosk.config import (
    KioskConfigError,
    hash_staff_code,
    load_config,
    staff_code_matches,
)
from kiosk.wording import CatalogueError, Refusal, Wording
from tests.conftest import REPO_ROOT


def test_the_shipped_example_loads_with_its_commented_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/kiosk.toml is valid and says what its comments say."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    config = load_config(REPO_ROOT / "config" / "kiosk.toml")

    assert "MAIN" == config.kiosk.branch
    assert ["en", "fr", "de"] == config.kiosk.languages
    assert 60.0 == config.timeouts.idle
    assert config.offline.enabled
    assert not config.offline.checkouts
    assert staff_code_matches("9999", config.kiosk.staff_code_hash)


def test_a_bad_file_names_the_file_the_key_and_the_problem(tmp_path: Path) -> None:
    """Each problem is reported with the file and the dotted key."""
    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[kiosk]\ninstitution = "DEMO"\nbranch = "MAIN"\nlanguages = ["en", "xx"]\n'
        '[account]\nlogin = "k"\npassword = "p"\n'
        "[timeouts]\nidle = 10\nwarning = 20\n"
        "[server]\nport = 70000\ncolour = 1\n"
    )

    with pytest.raises(KioskConfigError) as raised:
        load_config(path)

    message = str(raised.value)
    assert f"{path}: kiosk.languages: no catalogue for 'xx'" in message
    assert f"{path}: timeouts: warning must be shorter than idle" in message
    assert f"{path}: server.port: " in message
    assert f"{path}: server.colour: Extra inputs are not permitted" in message


def test_a_missing_file_and_bad_toml_are_named(tmp_path: Path) -> None:
    """A missing file and a syntax error each get one clear line."""
    with pytest.raises(KioskConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[kiosk\n")
    with pytest.raises(KioskConfigError, match=r"broken.toml: \(syntax\)"):
        load_config(broken)


MINIMAL = '[kiosk]\ninstitution = "DEMO"\nbranch = "MAIN"\n[account]\nlogin = "k"\n'


def test_bad_devices_and_missing_files_are_named_before_any_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown printer and RFID forms, a missing scanners file, a missing
    catalogue and a journal in a missing folder are each one line naming the
    key."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "kiosk.toml"
    path.write_text(
        MINIMAL + 'password = "p"\n'
        '[devices]\nprinter = "lpt:1"\nrfid = "feig"\n'
        'scanner = "absent-scanners.toml"\n'
        '[messages]\ncatalogue = "absent-messages.toml"\n'
    )
    with pytest.raises(KioskConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert f"{path}: devices.printer: 'lpt:1' is not file:PATH" in message
    assert f"{path}: devices.rfid: 'feig' is not feig:URL or 3m810:URL" in message

    path.write_text(
        MINIMAL + 'password = "p"\n'
        '[devices]\nscanner = "absent-scanners.toml"\n'
        'printer = "file:nowhere/receipts.bin"\n'
        '[messages]\ncatalogue = "absent-messages.toml"\n'
        '[offline]\nenabled = true\njournal = "gone/journal.sqlite3"\n'
    )
    with pytest.raises(KioskConfigError) as raised:
        load_config(path)
    lines = str(raised.value).splitlines()
    assert [
        f"{path}: devices.scanner: no such file 'absent-scanners.toml'",
        f"{path}: messages.catalogue: no such file 'absent-messages.toml'",
        f"{path}: offline.journal: the folder 'gone' does not exist; create it first",
        f"{path}: devices.printer: the folder 'nowhere' does not exist; "
        "create it first",
    ] == lines
    assert not (tmp_path / "gone").exists()


def test_values_of_the_wrong_type_are_refused(tmp_path: Path) -> None:
    """A port written as a string and a boolean written "yes" are refused,
    naming the key, rather than quietly converted."""
    path = tmp_path / "kiosk.toml"
    path.write_text(
        MINIMAL + "password = 1234\n"
        '[server]\nport = "6001"\n[patron]\npin_required = "yes"\n'
    )
    with pytest.raises(KioskConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert f"{path}: server.port: Input should be a valid integer" in message
    assert f"{path}: patron.pin_required: Input should be a valid boolean" in message
    assert f"{path}: account.password: Input should be a valid string" in message


def test_staff_codes_are_stored_hashed_and_salted() -> None:
    """The same code hashes differently each time and still matches."""
    first, second = hash_staff_code("2468"), hash_staff_code("2468")

    assert first != second
    assert "2468" not in first
    assert staff_code_matches("2468", first)
    assert staff_code_matches("2468", second)
    assert not staff_code_matches("2469", first)
    assert not staff_code_matches("2468", "")


def test_the_shipped_catalogue_words_every_refusal_in_three_languages() -> None:
    """kiosk/messages.toml has English, French and German for every refusal."""
    wording = Wording.load()

    for refusal in Refusal:
        for language in ("en", "fr", "de"):
            text = wording.text(refusal, language)
            assert text, (refusal, language)
    assert wording.text(Refusal.CARD_EXPIRED, "fr") != wording.text(
        Refusal.CARD_EXPIRED, "en"
    )


def test_a_refusal_is_recognised_from_the_servers_screen_message() -> None:
    """AF phrases pick the refusal; narrow phrases win over broad ones."""
    wording = Wording.load()

    assert Refusal.ITEM_UNKNOWN is wording.recognise("This item is not recognised.")
    assert Refusal.CARD_NOT_RECOGNISED is wording.recognise(
        "This library card is not recognised."
    )
    assert Refusal.CARD_EXPIRED is wording.recognise(
        "This library card has expired; please ask staff."
    )
    assert None is wording.recognise("Something new happened.")


def test_an_unknown_refusal_falls_back_to_the_servers_words(tmp_path: Path) -> None:
    """With no table for a refusal, the server's screen message is shown."""
    site = tmp_path / "site.toml"
    site.write_text('[card_expired]\nen = "Expired, sorry."\n')
    wording = Wording.load(site)

    assert "Expired, sorry." == wording.text(Refusal.CARD_EXPIRED, "de")
    assert "The item is damp." == wording.text(
        Refusal.ITEM_NOT_FOR_LOAN, "en", "The item is damp."
    )


def test_a_catalogue_with_an_unknown_refusal_is_refused(tmp_path: Path) -> None:
    """A typo in a table name is reported with the file and the key."""
    site = tmp_path / "site.toml"
    site.write_text('[card_expird]\nen = "x"\n')

    with pytest.raises(CatalogueError, match=r"site.toml: card_expird: not a refusal"):
        Wording.load(site)


# Each circulation refusal of this project's server, and what the kiosk makes
# of its screen message (the words are the core's, in ils/results.py).
SERVER_REFUSALS = {
    "UNKNOWN_PATRON": Refusal.CARD_NOT_RECOGNISED,
    "UNKNOWN_ITEM": Refusal.ITEM_UNKNOWN,
    "WRONG_PIN": Refusal.PIN_WRONG,
    "PIN_LOCKED": Refusal.PIN_TRIES_EXHAUSTED,
    "CARD_EXPIRED": Refusal.CARD_EXPIRED,
    "CARD_LOST": Refusal.CARD_LOST,
    "PATRON_BLOCKED": Refusal.CARD_BLOCKED,
    "FEES_OVER_LIMIT": Refusal.FINES,
    "OVERDUES_OVER_LIMIT": Refusal.OVERDUE_ITEMS,
    "MAX_LOANS_REACHED": Refusal.TOO_MANY_ITEMS,
    "ITEM_NOT_FOR_LOAN": Refusal.ITEM_NOT_FOR_LOAN,
    "ITEM_IN_HOUSE_ONLY": Refusal.ITEM_NOT_FOR_LOAN,
    "ITEM_LOST": Refusal.ITEM_NOT_FOR_LOAN,
    "ITEM_MISSING": Refusal.ITEM_NOT_FOR_LOAN,
    "ITEM_WITHDRAWN": Refusal.ITEM_NOT_FOR_LOAN,
    "ITEM_IN_TRANSIT": Refusal.ITEM_NOT_FOR_LOAN,
    "NO_LOAN_RULE": Refusal.ITEM_NOT_FOR_LOAN,
    "ITEM_ON_LOAN_TO_OTHER_PATRON": Refusal.ITEM_ON_LOAN_TO_OTHER,
    "ITEM_ON_HOLD_FOR_OTHER_PATRON": Refusal.ITEM_ON_HOLD_FOR_OTHER,
    "RENEWAL_LIMIT_REACHED": Refusal.RENEWAL_LIMIT,
    "DUE_DATE_NOT_LATER": Refusal.RENEWAL_TOO_SOON,
    "TRY_AGAIN": Refusal.SERVER_UNREACHABLE,
}


@pytest.mark.parametrize("name", sorted(SERVER_REFUSALS))
def test_every_circulation_refusal_of_our_server_is_recognised(name: str) -> None:
    """The shipped catalogue words each of the server's circulation refusals
    itself, instead of falling back to the server's English."""
    screen_message = REFUSAL_MESSAGES[CoreRefusal[name]]

    assert SERVER_REFUSALS[name] is Wording.load().recognise(screen_message)
