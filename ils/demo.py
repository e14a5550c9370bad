"""`ils demo`: a small, complete library to try the system with.

Layer: `ils` (the core). Imports click, SQLAlchemy, `ils.db`, `ils.schema`,
`ils.models`, `ils.secrets`, `ils.importing`, `ils.circulation` (to place the
demo holds), its own `ils.demo_data_tables` and `ils.demo_summary`, and the
standard library.

The demo is deterministic apart from dates: the same patrons, items and
barcodes every time, so that the README, the server's tests and a new user can
rely on them. Its catalogue is `ils/demo_data/classics.mrc`, imported with the
ordinary MARC importer.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from importlib.resources import as_file, files
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ils.circulation import Circulation
from ils.db import Database, DatabaseConfigError, display_url
from ils.demo_data_tables import (
    BLOCK_NOTE,
    BRANCHES,
    CATEGORIES,
    DEMO_FEES,
    DEMO_FINE_CAP_MINOR,
    DEMO_FINE_GRACE_DAYS,
    DEMO_FINE_MINOR,
    DEMO_PIN,
    FIRST_NAMES,
    FIXED_PATRONS,
    INSTITUTION_CODE,
    INSTITUTION_NAME,
    ITEM_TYPES,
    LIBRARY_CODE,
    LOAN_RULES,
    SURNAMES,
    TIMEZONE,
    DemoExistsError,
    DemoFee,
    DemoHold,
    DemoItem,
    DemoLibrary,
    DemoPatron,
    item_barcode,  # noqa: F401 - re-exported
    patron_barcode,
)
from ils.demo_summary import _summary
from ils.fees import FeeService, fee_views
from ils.importing.marc import import_marc
from ils.models import (
    BibRecord,
    Branch,
    Fee,
    Hold,
    HoldStatus,
    Institution,
    Item,
    ItemStatus,
    ItemType,
    LoanRule,
    Patron,
    PatronBlock,
    PatronCategory,
)
from ils.schema import DATABASE_URL_VARIABLE, upgrade_database
from ils.secrets import hash_secret


def _demo_institution_id(session: Session) -> int | None:
    return session.scalar(
        select(Institution.id).where(Institution.code == INSTITUTION_CODE)
    )


def _ids(
    session: Session, model: type[PatronCategory] | type[ItemType]
) -> dict[str, int]:
    return {code: id_ for id_, code in session.execute(select(model.id, model.code))}


def _build_structure(session: Session) -> None:
    institution = Institution(
        code=INSTITUTION_CODE, name=INSTITUTION_NAME, currency="USD"
    )
    session.add(institution)
    for code, name in BRANCHES:
        session.add(
            Branch(code=code, name=name, timezone=TIMEZONE, institution=institution)
        )

    existing = set(session.scalars(select(PatronCategory.code)))
    for code, name in CATEGORIES:
        if code not in existing:
            session.add(PatronCategory(code=code, name=name))
    existing = set(session.scalars(select(ItemType.code)))
    for code, name, media in ITEM_TYPES:
        if code not in existing:
            session.add(ItemType(code=code, name=name, media_type=media))
    session.flush()

    categories = _ids(session, PatronCategory)
    item_types = _ids(session, ItemType)
    for category, item_type, days, renewals, most in LOAN_RULES:
        catch_all = category is None and item_type is None
        session.add(
            LoanRule(
                patron_category_id=categories[category] if category else None,
                item_type_id=item_types[item_type] if item_type else None,
                loan_days=days,
                renewals_allowed=renewals,
                max_loans=most,
                fine_minor=DEMO_FINE_MINOR if catch_all else 0,
                fine_grace=DEMO_FINE_GRACE_DAYS if catch_all else 0,
                fine_cap_minor=DEMO_FINE_CAP_MINOR if catch_all else None,
            )
        )


def _build_patrons(session: Session, count: int, today: date) -> None:
    categories = _ids(session, PatronCategory)
    branches = {
        code: id_ for id_, code in session.execute(select(Branch.id, Branch.code))
    }
    # One hash serves every demo patron: they all have the same PIN, and hashing
    # is slow on purpose.
    pin_hash = hash_secret(DEMO_PIN)
    valid_until = today + timedelta(days=3 * 365)

    for serial in range(1, max(count, len(FIXED_PATRONS)) + 1):
        if serial <= len(FIXED_PATRONS):
            fixed = FIXED_PATRONS[serial - 1]
            surname, firstname, category = (
                fixed.surname,
                fixed.firstname,
                fixed.category,
            )
            expires_on = today - timedelta(days=30) if fixed.expired else valid_until
            blocked = fixed.blocked
        else:
            surname = SURNAMES[serial % len(SURNAMES)]
            firstname = FIRST_NAMES[serial % len(FIRST_NAMES)]
            category = ("ADULT", "ADULT", "ADULT", "CHILD", "STAFF")[serial % 5]
            expires_on, blocked = valid_until, False

        barcode = patron_barcode(serial)
        patron = Patron(
            barcode=barcode,
            surname=surname,
            firstname=firstname,
            category_id=categories[category],
            home_branch_id=branches["EAST" if serial % 4 == 0 else "MAIN"],
            pin_hash=pin_hash,
            expires_on=expires_on,
            email=f"patron{serial}@demo.invalid",
        )
        session.add(patron)
        if blocked:
            session.add(PatronBlock(patron=patron, note=BLOCK_NOTE, placed_by="demo"))


# Who holds what in the demo: Bob's hold waits on the Main hold shelf, Charlie's
# is in the queue for pickup at East. They take books of the last two titles by
# barcode, so that the first books stay free to borrow.
DEMO_HOLDS = ((2, "MAIN", "waiting"), (3, "EAST", "pending"))


def _place_holds(database: Database, today: date) -> None:
    """Place the demo holds through the circulation service, and trap the first by
    checking its book in at Main, as staff pulling it from the shelf would."""
    moment = datetime.combine(today, time(12, 0), tzinfo=ZoneInfo(TIMEZONE))
    circulation = Circulation(database, clock=lambda: moment)
    with database.read() as session:
        rows = session.execute(
            select(Item.barcode, Item.record_id)
            .join(ItemType, Item.item_type_id == ItemType.id)
            .where(Item.status == ItemStatus.AVAILABLE, ItemType.code == "BOOK")
            .order_by(Item.barcode.desc())
        )
        # One book of each of the last titles, so the holds are on two titles.
        by_title: dict[int, str] = {}
        for barcode, record_id in rows:
            by_title.setdefault(record_id, barcode)
            if len(by_title) == len(DEMO_HOLDS):
                break
        barcodes = list(by_title.values())
    for (serial, pickup, state), barcode in zip(DEMO_HOLDS, barcodes, strict=False):
        circulation.place_hold(
            patron_barcode(serial),
            item_barcode=barcode,
            pickup_branch_code=pickup,
            terminal="demo",
        )
        if state == "waiting":
            circulation.checkin(barcode, branch_code=pickup, terminal="demo")


def _charge_fees(database: Database) -> None:
    """Charge the demo fees through the fee service, as staff at the desk would."""
    fees = FeeService(database)
    for serial, kind, amount, description in DEMO_FEES:
        fees.charge(
            patron_barcode(serial),
            kind=kind,
            amount_minor=amount,
            description=description,
            by="demo",
        )


def _demo_fees(session: Session) -> tuple[DemoFee, ...]:
    found: list[DemoFee] = []
    for patron in session.scalars(
        select(Patron).where(Patron.id.in_(select(Fee.patron_id))).order_by(Patron.id)
    ):
        found.extend(
            DemoFee(
                patron_barcode=patron.barcode,
                kind=fee.kind.value,
                description=fee.description,
                balance_minor=fee.balance_minor,
                currency=fee.currency,
            )
            for fee in fee_views(session, patron.id)
        )
    return tuple(found)


def _demo_holds(session: Session) -> tuple[DemoHold, ...]:
    holds = session.scalars(
        select(Hold)
        .where(Hold.status.in_((HoldStatus.PENDING, HoldStatus.WAITING)))
        .order_by(Hold.id)
    )
    found: list[DemoHold] = []
    for hold in holds:
        item = hold.trapped_item
        if item is None:
            item = session.scalars(
                select(Item).where(Item.record_id == hold.record_id).order_by(Item.id)
            ).first()
        found.append(
            DemoHold(
                patron_barcode="" if hold.patron is None else hold.patron.barcode,
                item_barcode="" if item is None else item.barcode,
                title=hold.record.title,
                pickup_branch=hold.pickup_branch.code,
                state="waiting" if hold.status is HoldStatus.WAITING else "pending",
            )
        )
    return tuple(found)


def _describe(database: Database, created: bool, today: date) -> DemoLibrary:
    with database.read() as session:
        institution_id = _demo_institution_id(session)
        if institution_id is None:  # pragma: no cover - checked by the caller
            raise RuntimeError("the demo institution is missing")
        branch_codes = tuple(
            session.scalars(
                select(Branch.code)
                .where(Branch.institution_id == institution_id)
                .order_by(Branch.id)
            )
        )

        patrons: list[DemoPatron] = []
        for serial in range(1, len(FIXED_PATRONS) + 1):
            patron = session.scalar(
                select(Patron).where(Patron.barcode == patron_barcode(serial))
            )
            if patron is None:
                continue
            if any(block.lifted_at is None for block in patron.blocks):
                state = "blocked"
            elif patron.expires_on is not None and patron.expires_on < today:
                state = "expired"
            else:
                state = "ok"
            patrons.append(
                DemoPatron(
                    barcode=patron.barcode,
                    name=f"{patron.firstname} {patron.surname}",
                    category=patron.category.code,
                    pin=DEMO_PIN if patron.pin_hash else None,
                    state=state,
                )
            )

        items = tuple(
            DemoItem(
                barcode=item.barcode,
                title=item.record.title,
                item_type=item.item_type.code,
                branch=item.home_branch.code,
                status=item.status,
            )
            for item in session.scalars(
                select(Item)
                .join(ItemType, Item.item_type_id == ItemType.id)
                .where(Item.status == ItemStatus.AVAILABLE, ItemType.code == "BOOK")
                .order_by(Item.barcode)
                .limit(6)
            )
        )

        def count(model: type[Patron] | type[BibRecord] | type[Item]) -> int:
            return session.scalar(select(func.count()).select_from(model)) or 0

        return DemoLibrary(
            url=database.url,
            created=created,
            institution_id=institution_id,
            institution_code=INSTITUTION_CODE,
            branch_codes=branch_codes,
            patron_count=count(Patron),
            record_count=count(BibRecord),
            item_count=count(Item),
            patrons=tuple(patrons),
            items=items,
            holds=_demo_holds(session),
            fees=_demo_fees(session),
        )


def build_demo(
    url: str,
    *,
    patrons: int = 50,
    items_per_record: int = 2,
    if_missing: bool = False,
    today: date | None = None,
    holds: bool = False,
    fees: bool = False,
) -> DemoLibrary:
    """Build the demo library into the database at `url`, creating its schema.

    Args:
        url: the database; an empty one, or one without the demo library.
        patrons: how many patrons in all (at least the five fixed ones are made).
        items_per_record: items for each catalogue record without holdings.
        if_missing: when the demo is already there, describe it and change
            nothing instead of refusing.
        today: the date expiry is reckoned from (default: today).
        holds: place the demo holds (`DEMO_HOLDS`): one waiting on the hold
            shelf, one in the queue. `ils demo` does; off by default so that
            tests counting holds start from none.
        fees: charge the demo fees (`DEMO_FEES`) to Bob. `ils demo` does; off
            by default so that tests see patrons who owe nothing.

    Raises:
        DemoExistsError: the demo library is already there and not `if_missing`.
        DatabaseConfigError: the URL cannot be used.
    """
    today = today or date.today()
    upgrade_database(url)
    database = Database(url, pool_size=1)
    try:
        with database.read() as session:
            present = _demo_institution_id(session) is not None
        if present:
            if not if_missing:
                raise DemoExistsError(
                    f"{display_url(url)} already holds the demo library; use a new"
                    " database file (e.g. --db sqlite:///var/demo2.sqlite3), or"
                    " --if-missing to leave it as it is"
                )
            return _describe(database, created=False, today=today)

        with database.transaction() as session:
            _build_structure(session)
            _build_patrons(session, patrons, today)

        source = files("ils.demo_data").joinpath("classics.mrc")
        with as_file(source) as path:
            import_marc(
                database,
                Path(path),
                items_per_record=items_per_record,
                branch_code="MAIN",
                item_type_code="BOOK",
                library_code=LIBRARY_CODE,
                institution_code=INSTITUTION_CODE,
            )

        # Reference items never leave the building, whatever the file says.
        with database.transaction() as session:
            reference = select(ItemType.id).where(ItemType.code == "REF")
            for item in session.scalars(
                select(Item).where(Item.item_type_id.in_(reference))
            ):
                item.status = ItemStatus.NOT_FOR_LOAN

        if holds:
            _place_holds(database, today)
        if fees:
            _charge_fees(database)
        return _describe(database, created=True, today=today)
    finally:
        database.dispose()


@click.command("demo")
@click.option(
    "--db",
    "url",
    envvar=DATABASE_URL_VARIABLE,
    metavar="URL",
    help="Where to build it, e.g. sqlite:///var/demo.sqlite3 (a new file is"
    f" best). Defaults to ${DATABASE_URL_VARIABLE}.",
)
@click.option(
    "--if-missing",
    is_flag=True,
    help="If the demo library is already there, just show it instead of refusing.",
)
@click.option(
    "--patrons",
    type=click.IntRange(min=len(FIXED_PATRONS)),
    default=50,
    show_default=True,
    help="How many patrons to make.",
)
@click.option(
    "--items-per-record",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Items to make for each title that has none in the demo catalogue.",
)
@click.option(
    "--holds/--no-holds",
    default=True,
    show_default=True,
    help="Place two demo holds: one waiting for pickup, one in the queue.",
)
@click.option(
    "--fees/--no-fees",
    default=True,
    show_default=True,
    help="Charge Bob two demo fees, for terminals to show and take payment for.",
)
def demo_command(
    *,
    url: str | None,
    if_missing: bool,
    patrons: int,
    items_per_record: int,
    holds: bool,
    fees: bool,
) -> None:
    """Build a demo library to try the system with: branches, patrons, books.

    It makes the institution DEMO with branches MAIN and EAST, loan rules,
    about 25 classic titles with items, and patrons whose barcodes and PINs are
    printed at the end. Example:

        ils demo --db sqlite:///var/demo.sqlite3
    """
    if not url:
        raise click.UsageError(
            "say where to build the demo with --db URL or set"
            f" ${DATABASE_URL_VARIABLE}, e.g. --db sqlite:///var/demo.sqlite3"
        )
    try:
        demo = build_demo(
            url,
            patrons=patrons,
            items_per_record=items_per_record,
            if_missing=if_missing,
            holds=holds,
            fees=fees,
        )
    except DatabaseConfigError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    except DemoExistsError as error:
        raise click.ClickException(str(error)) from error
    _summary(demo)
