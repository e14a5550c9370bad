"""Importing a MARC 21 file into the catalogue: titles, and items from Koha 952s.

Layer: `ils` (the core). Imports pymarc, SQLAlchemy, `ils.db`, `ils.models` and
the standard library. It never prints or logs: it returns an `ImportReport`.

The file is read as a stream and written in batches of `BATCH_SIZE` records, one
transaction each, so a file of any size never sits in one transaction. A broken
record is reported and skipped, and the rest still import. If the database
refuses a batch (a lost connection, a full disk), that batch is rolled back
whole, the import stops and `ImportAbortedError` says which records were kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pymarc import Record
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ils.db import Database
from ils.importing.barcodes import (
    BARCODE_LENGTH,
    BarcodeKind,
    barcode_serial,
    make_barcode,
)
from ils.importing.codes import CodeBook, choose_institution_code, only_branch_code
from ils.importing.marcmap import Holding, call_number_of, holdings_of, title_columns
from ils.importing.marcread import (
    DecodedRecord,
    MarcEncoding,
    decode_record,
    split_records,
)
from ils.importing.report import (
    ImportAbortedError,
    ImportReport,
    ImportSetupError,
    ReportTally,
    describe_database_error,
)
from ils.models import BibRecord, Item, ItemStatus

BATCH_SIZE = 500
# ISO 2709 gives a record's length in five digits.
MAX_RECORD_BYTES = 99_999

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    items_per_record: int
    default_branch: str | None
    item_type_code: str
    library_code: str


def _batches(
    records: Iterable[DecodedRecord], size: int
) -> Iterator[list[DecodedRecord]]:
    batch: list[DecodedRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _ItemBarcodes:
    """Barcodes already taken, and the next generated one."""

    def __init__(self, library_code: str, highest_serial: int) -> None:
        self.library_code = library_code
        self.serial = highest_serial
        self.seen_in_file: set[str] = set()

    def generate(self, taken: set[str]) -> str:
        while True:
            self.serial += 1
            barcode = make_barcode(BarcodeKind.ITEM, self.library_code, self.serial)
            if barcode not in taken and barcode not in self.seen_in_file:
                return barcode


def _highest_item_serial(session: Session, library_code: str) -> int:
    prefix = BarcodeKind.ITEM.value + library_code
    pattern = prefix + "_" * (BARCODE_LENGTH - len(prefix))
    barcodes = session.scalars(select(Item.barcode).where(Item.barcode.like(pattern)))
    serials = (barcode_serial(BarcodeKind.ITEM, library_code, b) for b in barcodes)
    return max((serial for serial in serials if serial is not None), default=0)


class _Batch:
    """Writes one batch of decoded records inside one transaction."""

    def __init__(
        self,
        session: Session,
        codes: CodeBook,
        barcodes: _ItemBarcodes,
        settings: _Settings,
        tally: ReportTally,
    ) -> None:
        self.session = session
        self.codes = codes
        self.barcodes = barcodes
        self.settings = settings
        self.tally = tally
        self.in_database: set[str] = set()

    def write(self, batch: list[DecodedRecord]) -> None:
        holdings = {
            decoded.raw.position: holdings_of(decoded.record)
            for decoded in batch
            if decoded.record is not None
        }
        wanted = {
            holding.barcode
            for found, _ in holdings.values()
            for holding in found
            if holding.barcode
        }
        if wanted:
            self.in_database = set(
                self.session.scalars(
                    select(Item.barcode).where(Item.barcode.in_(wanted))
                )
            )

        for decoded in batch:
            self.tally.read += 1
            position = decoded.raw.position
            for message in decoded.problems:
                self.tally.problem(position, message)
            if decoded.record is None:
                self.tally.skipped += 1
                continue
            self._record(decoded.record, holdings[position], position)
            self.tally.imported += 1

    def _record(
        self,
        record: Record,
        found: tuple[list[Holding], list[str]],
        position: int,
    ) -> None:
        columns, problems = title_columns(record)
        holdings, holding_problems = found
        for message in problems + holding_problems:
            self.tally.problem(position, message)

        marc: bytes | None = record.as_marc()
        if marc is not None and len(marc) > MAX_RECORD_BYTES:
            self.tally.problem(
                position,
                f"the record is {len(marc)} bytes, too long for ISO 2709;"
                " its columns are kept but not the MARC record",
            )
            marc = None

        bib = BibRecord(
            control_number=columns.control_number,
            title=columns.title,
            author=columns.author,
            isbn=columns.isbn,
            publisher=columns.publisher,
            publication_year=columns.publication_year,
            marc=marc,
        )
        self.session.add(bib)

        if holdings:
            for holding in holdings:
                self._holding(bib, holding, position)
        elif self.settings.items_per_record:
            call_number = call_number_of(record)
            for _ in range(self.settings.items_per_record):
                self._generated_item(bib, call_number, position)

    def _taken(self, barcode: str) -> bool:
        return barcode in self.in_database or barcode in self.barcodes.seen_in_file

    def _holding(self, bib: BibRecord, holding: Holding, position: int) -> None:
        barcode = holding.barcode
        if barcode is None:
            barcode = self.barcodes.generate(self.in_database)
            self.tally.problem(position, f"952 without $p barcode; given {barcode}")
        elif barcode in self.barcodes.seen_in_file:
            self.tally.problem(
                position, f"barcode {barcode} appears earlier in the file; item skipped"
            )
            return
        elif barcode in self.in_database:
            self.tally.problem(
                position, f"barcode {barcode} is already in the database; item skipped"
            )
            return

        home = holding.home_branch or self.settings.default_branch
        if home is None:
            self.tally.problem(
                position,
                f"item {barcode} has no home branch (952 $a) and no --branch was"
                " given; item skipped",
            )
            return
        current = holding.current_branch or home
        item_type = holding.item_type or self.settings.item_type_code

        self._add_item(
            Item(
                barcode=barcode,
                record=bib,
                home_branch_id=self.codes.branch_id(self.session, home, position),
                current_branch_id=self.codes.branch_id(self.session, current, position),
                item_type_id=self.codes.item_type_id(self.session, item_type, position),
                call_number=holding.call_number,
                location=holding.location,
                collection=holding.collection,
                price_minor=holding.price_minor,
                status=holding.status,
            )
        )

    def _generated_item(
        self, bib: BibRecord, call_number: str | None, position: int
    ) -> None:
        branch = self.settings.default_branch
        assert branch is not None  # import_marc refuses to start without one
        branch_id = self.codes.branch_id(self.session, branch, position)
        self._add_item(
            Item(
                barcode=self.barcodes.generate(self.in_database),
                record=bib,
                home_branch_id=branch_id,
                current_branch_id=branch_id,
                item_type_id=self.codes.item_type_id(
                    self.session, self.settings.item_type_code, position
                ),
                call_number=call_number,
                status=ItemStatus.AVAILABLE,
            )
        )

    def _add_item(self, item: Item) -> None:
        self.session.add(item)
        self.barcodes.seen_in_file.add(item.barcode)
        self.tally.items_created += 1


def _check_options(
    items_per_record: int, library_code: str, encoding: str
) -> MarcEncoding:
    if items_per_record < 0:
        raise ImportSetupError(
            f"--items-per-record cannot be negative ({items_per_record})"
        )
    if len(library_code) != 4 or not (
        library_code.isascii() and library_code.isdigit()
    ):
        raise ImportSetupError(f"the library code is four digits, not {library_code!r}")
    try:
        return MarcEncoding(encoding)
    except ValueError:
        choices = ", ".join(choice.value for choice in MarcEncoding)
        raise ImportSetupError(
            f"unknown encoding {encoding!r}; choose one of {choices}"
        ) from None


def import_marc(
    database: Database,
    path: Path,
    *,
    items_per_record: int = 0,
    branch_code: str | None = None,
    item_type_code: str = "BOOK",
    library_code: str = "1234",
    institution_code: str | None = None,
    encoding: str = "auto",
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import a MARC 21 file (ISO 2709) into the catalogue.

    Args:
        database: where to import; its schema must be current.
        path: the file, in UTF-8 or MARC-8.
        items_per_record: items to make for each record that has no 952 field.
        branch_code: home branch of generated items and of 952s without $a;
            needed with `items_per_record` unless the database has one branch.
        item_type_code: item type of generated items and of 952s without $y.
        library_code: the four digits inside generated item barcodes.
        institution_code: the institution that branches made on the fly belong
            to; by default the only one, or a new `DEFAULT` on an empty database.
        encoding: "auto" (leader position 9), "utf-8" or "marc8".
        progress: called with the number of records read after each batch.
        batch_size: records per transaction.

    Returns:
        What was read, stored and skipped, with every problem and its record
        number.

    Raises:
        ImportSetupError: an option cannot be used; nothing was read.
        ImportAbortedError: the database refused a batch; earlier batches stay.
        OSError: the file cannot be opened.
    """
    marc_encoding = _check_options(items_per_record, library_code, encoding)
    tally = ReportTally()

    with database.read() as session:
        institution = choose_institution_code(session, institution_code)
        default_branch = branch_code or only_branch_code(session)
        highest_serial = _highest_item_serial(session, library_code)
    if items_per_record and default_branch is None:
        raise ImportSetupError(
            "generated items need a home branch: give --branch CODE"
            " (it is created if it does not exist)"
        )

    settings = _Settings(
        items_per_record=items_per_record,
        default_branch=default_branch,
        item_type_code=item_type_code,
        library_code=library_code,
    )
    codes = CodeBook(institution, tally)
    barcodes = _ItemBarcodes(library_code, highest_serial)

    with path.open("rb") as stream:
        decoded = (decode_record(raw, marc_encoding) for raw in split_records(stream))
        for batch in _batches(decoded, batch_size):
            kept = tally.freeze()
            try:
                with database.transaction() as session:
                    _Batch(session, codes, barcodes, settings, tally).write(batch)
            except SQLAlchemyError as error:
                first, last = batch[0].raw.position, batch[-1].raw.position
                raise ImportAbortedError(
                    f"the database refused records #{first} to #{last}, which were"
                    f" rolled back; records before #{first} were imported"
                    f" ({describe_database_error(error)})",
                    kept,
                ) from error
            if progress is not None:
                progress(tally.read)

    return tally.freeze()
