"""Languages: complete catalogues, compiled .mo files that match their sources,
switching at run time; and .kv files that hold no logic."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from kiosk.devices import RECEIPT_LABELS
from kiosk.i18n import DATE_FORMAT, LOCALE_DIR, Catalogues
from kiosk.pocompile import PoError, catalogues, main, mo_bytes, read_po
from kiosk.present import Presenter
from kiosk.transactions import Action, ItemOutcome, Result
from kiosk.wording import Refusal, Wording
from tests.conftest import REPO_ROOT

KIOSK = REPO_ROOT / "kiosk"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'


def used_messages() -> set[str]:
    """Every msgid the screens and the presenter ask for."""
    found = {DATE_FORMAT}
    for kv in (KIOSK / "screens").glob("*.kv"):
        found.update(re.findall(r"app\.t\(" + _QUOTED, kv.read_text()))
    source = (KIOSK / "present.py").read_text()
    for call in re.findall(r"N_\(\s*((?:" + _QUOTED + r"\s*)+)\)", source):
        found.add("".join(re.findall(_QUOTED, call[0])))
    found.update(re.findall(r"self\.t\(\s*language,\s*" + _QUOTED, source))
    found.update(RECEIPT_LABELS.values())
    return found


def test_the_committed_mo_files_match_their_po_sources() -> None:
    """`python -m kiosk.pocompile --check` finds nothing stale."""
    assert 0 == main(["--check"])


@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_every_screen_text_is_translated(language: str) -> None:
    """English, French and German have a translation for every message used."""
    translated = read_po(LOCALE_DIR / language / "LC_MESSAGES" / "kiosk.po")

    missing = sorted(used_messages() - set(translated))
    assert [] == missing


def test_our_mo_reads_like_gnu_msgfmts(tmp_path: Path) -> None:
    """gettext reads the same catalogue from our .mo as from GNU msgfmt's."""
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.skip("GNU gettext's msgfmt is not installed")
    for po in catalogues():
        theirs = tmp_path / "theirs.mo"
        subprocess.run([msgfmt, "-o", str(theirs), str(po)], check=True)
        with theirs.open("rb") as file:
            gnu = gettext.GNUTranslations(file)
        with po.with_suffix(".mo").open("rb") as file:
            ours = gettext.GNUTranslations(file)
        assert gnu._catalog == ours._catalog  # type: ignore[attr-defined]


def test_the_po_reader_skips_fuzzy_and_names_bad_lines(tmp_path: Path) -> None:
    """Fuzzy entries are not compiled; an unreadable line is named with its number."""
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        '#, fuzzy\nmsgid "Hi"\nmsgstr "Salut"\n\n'
        'msgid "Bye"\nmsgstr ""\n"Au "\n"revoir"\n'
    )
    assert {
        "": "Content-Type: text/plain; charset=UTF-8\n",
        "Bye": "Au revoir",
    } == read_po(po)
    assert mo_bytes(read_po(po)).startswith(b"\xde\x12\x04\x95")

    po.write_text('msgid "a"\nmsgstr "b"\nnonsense\n')
    with pytest.raises(PoError, match=r"x.po:3: cannot read"):
        read_po(po)


def test_language_switches_at_run_time() -> None:
    """The same presenter words a row in each language asked for."""
    presenter = Presenter(Catalogues(["en", "fr", "de"]), Wording.load())
    lent = ItemOutcome(
        action=Action.BORROW,
        barcode="31234000000016",
        result=Result.DONE,
        title="Emma",
        due=date(2026, 12, 25),
    )
    refused = ItemOutcome(
        action=Action.BORROW,
        barcode="39",
        result=Result.REFUSED,
        refusal=Refusal.ITEM_NOT_FOR_LOAN,
        screen_message="This item cannot be borrowed.",
    )

    assert "Borrowed. Due back Dec 25, 2026." == presenter.row("en", lent).detail
    assert "Emprunté. À rendre le 25/12/2026." == presenter.row("fr", lent).detail
    assert "Ausgeliehen. Rückgabe bis 25.12.2026." == presenter.row("de", lent).detail
    assert (
        "Dieses Medium kann nicht ausgeliehen werden. Bitte fragen Sie an der Theke."
        == presenter.row("de", refused).detail
    )


def test_money_is_written_as_each_language_writes_it() -> None:
    """Fees use the language's decimal separator and the currency's symbol, and
    a currency with no known symbol keeps its code."""
    presenter = Presenter(Catalogues(["en", "fr", "de"]), Wording.load())

    assert "Fees owed: $2.50" == presenter.fees("en", "2.50", "USD")
    assert "Frais dus : 0,00 $" == presenter.fees("fr", "0.00", "USD")
    assert "Offene Gebühren: 12,50 €" == presenter.fees("de", "12.50", "EUR")
    assert "Fees owed: 3.00 CHF" == presenter.fees("en", "3.00", "CHF")
    assert "Fees owed: 1.00" == presenter.fees("en", "1.00", "")


def test_kv_files_hold_layout_and_bindings_only() -> None:
    """Every event handler in a .kv file is one call, with no statements."""
    offences = []
    for kv in sorted((KIOSK / "screens").glob("*.kv")):
        for number, line in enumerate(kv.read_text().splitlines(), 1):
            handler = re.match(r"\s*on_\w+:\s*(.*)$", line)
            if handler is None:
                continue
            body = handler.group(1)
            if not re.fullmatch(r"[\w.]+\(.*\)", body) or ";" in body:
                offences.append(f"{kv.name}:{number}: {body}")
    assert [] == offences


def test_every_screen_has_its_own_kv_file() -> None:
    """kiosk/screens has one .kv per view-model screen, named after it."""
    from kiosk.model import Screen  # noqa: PLC0415

    names = {path.stem for path in (KIOSK / "screens").glob("*.kv")}
    assert {screen.value for screen in Screen} | {"widgets"} == names
