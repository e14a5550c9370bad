"""The demo library: fixed patrons and items that other tests and the README rely on."""

from __future__ import annotations

import runpy
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ils.db import Database
from ils.demo import BLOCK_NOTE, DemoExistsError, build_demo, demo_command
from ils.importing.barcodes import is_luhn_valid
from ils.models import (
    BibRecord,
    Branch,
    Institution,
    Item,
    ItemStatus,
    ItemType,
    LoanRule,
    Patron,
    PatronCategory,
)
from ils.secrets import verify_secret

REPO_ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 12, 4)


def test_build_demo_makes_the_fixed_patrons_and_items(database_url: str) -> None:
    """Patrons 1-5 have the documented states and PINs; item 1 is a book at MAIN."""
    demo = build_demo(database_url, patrons=12, today=TODAY)

    assert demo.created
    assert demo.branch_codes == ("MAIN", "EAST")
    assert [(p.barcode, p.category, p.state) for p in demo.patrons] == [
        ("21234000000018", "ADULT", "ok"),
        ("21234000000026", "ADULT", "ok"),
        ("21234000000034", "CHILD", "ok"),
        ("21234000000042", "ADULT", "expired"),
        ("21234000000059", "ADULT", "blocked"),
    ]
    assert demo.items[0].barcode == "31234000000016"
    assert (demo.items[0].item_type, demo.items[0].branch) == ("BOOK", "MAIN")
    assert demo.items[0].status is ItemStatus.AVAILABLE

    database = Database(database_url)
    try:
        with database.read() as session:
            institution = session.scalars(select(Institution)).one()
            assert (institution.code, institution.name, institution.currency) == (
                "DEMO",
                "Demo Public Library",
                "USD",
            )
            zones = set(session.scalars(select(Branch.timezone)))
            assert zones == {"America/New_York"}

            patrons = list(session.scalars(select(Patron).order_by(Patron.barcode)))
            assert len(patrons) == 12
            assert all(is_luhn_valid(patron.barcode) for patron in patrons)
            for patron in patrons[:5]:
                assert patron.pin_hash is not None
                assert verify_secret("1234", patron.pin_hash)
            assert patrons[3].expires_on is not None
            assert patrons[3].expires_on < TODAY
            assert [block.note for block in patrons[4].blocks] == [BLOCK_NOTE]
            assert patrons[0].blocks == []

            first = session.scalars(
                select(Item).where(Item.barcode == "31234000000016")
            ).one()
            assert first.record.title == "Pride and prejudice"
            assert first.home_branch.code == "MAIN"
            assert first.item_type.code == "BOOK"
            assert first.status is ItemStatus.AVAILABLE

            barcodes = list(session.scalars(select(Item.barcode)))
            assert all(is_luhn_valid(barcode) for barcode in barcodes)
            assert all(barcode.startswith("31234") for barcode in barcodes)
            # 26 titles: 9 with 12 copies in 952s, 17 with 2 generated items each.
            assert session.scalar(select(func.count()).select_from(BibRecord)) == 26
            assert len(barcodes) == 12 + 17 * 2

            reference = session.scalars(
                select(Item).join(ItemType).where(ItemType.code == "REF")
            ).all()
            assert [item.status for item in reference] == [ItemStatus.NOT_FOR_LOAN]
            dvd = session.scalars(select(ItemType).where(ItemType.code == "DVD")).one()
            assert dvd.media_type == "006"

            categories = {
                category.id: category.code
                for category in session.scalars(select(PatronCategory))
            }
            types = {kind.id: kind.code for kind in session.scalars(select(ItemType))}
            rules = {
                (
                    categories.get(rule.patron_category_id or -1),
                    types.get(rule.item_type_id or -1),
                ): (rule.loan_days, rule.renewals_allowed, rule.max_loans)
                for rule in session.scalars(select(LoanRule))
            }
            assert rules == {
                (None, None): (21, 2, 10),
                ("CHILD", None): (14, 1, 3),
                (None, "DVD"): (7, 1, 10),
            }
    finally:
        database.dispose()


def test_non_ascii_titles_survive_the_demo_import(sqlite_url: str) -> None:
    """Titles with é, œ and ö come through the importer intact."""
    build_demo(sqlite_url, patrons=5, today=TODAY)

    database = Database(sqlite_url)
    try:
        with database.read() as session:
            titles = set(session.scalars(select(BibRecord.title)))
            authors = set(session.scalars(select(BibRecord.author)))
    finally:
        database.dispose()
    assert "Les misérables" in titles
    assert "Madame Bovary : mœurs de province" in titles
    assert "Faust : eine Tragödie" in titles
    assert "Brontë, Charlotte" in authors


def test_if_missing_is_idempotent_and_a_rerun_is_refused(sqlite_url: str) -> None:
    """--if-missing leaves an existing demo alone; without it a rerun is refused."""
    first = build_demo(sqlite_url, patrons=6, today=TODAY)

    again = build_demo(sqlite_url, patrons=6, if_missing=True, today=TODAY)
    with pytest.raises(DemoExistsError, match="new database"):
        build_demo(sqlite_url, patrons=6, today=TODAY)

    assert not again.created
    assert (again.patron_count, again.item_count, again.record_count) == (
        first.patron_count,
        first.item_count,
        first.record_count,
    )
    assert again.patrons == first.patrons
    assert again.items == first.items


def test_demo_command_prints_patrons_and_items(sqlite_url: str) -> None:
    """`ils demo` prints the first patron's barcode, PIN and the first item."""
    runner = CliRunner()

    built = runner.invoke(demo_command, ["--db", sqlite_url, "--patrons", "5"])
    again = runner.invoke(demo_command, ["--db", sqlite_url, "--if-missing"])
    refused = runner.invoke(demo_command, ["--db", sqlite_url])

    assert built.exit_code == 0, built.output
    assert "21234000000018  Alice Reader" in built.output
    assert "31234000000016  MAIN  Pride and prejudice" in built.output
    assert again.exit_code == 0
    assert "already present" in again.output
    assert refused.exit_code == 1
    assert "already holds the demo library" in refused.output


def test_committed_demo_marc_file_is_what_the_script_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script regenerates ils/demo_data/classics.mrc byte for byte."""
    output = tmp_path / "classics.mrc"
    monkeypatch.setattr(sys, "argv", ["make_demo_marc.py", str(output)])

    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(
            str(REPO_ROOT / "scripts" / "make_demo_marc.py"), run_name="__main__"
        )

    assert exit_info.value.code == 0
    committed = (REPO_ROOT / "ils" / "demo_data" / "classics.mrc").read_bytes()
    assert output.read_bytes() == committed
