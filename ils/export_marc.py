"""MARC side of `ils export`: a record with its items as Koha 952 fields.

Layer: `ils` (the core). Imports pymarc, `ils.models`, `ils.export_csv` and
the standard library; it must not import `ils.exporting` or anything above
the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymarc import Field, Indicators, Record, Subfield

from ils.export_csv import money_text
from ils.models import BibRecord, Item, ItemStatus

# Koha's 952 status subfields: $0 withdrawn, $1 lost (4: missing), $4 damaged,
# $7 not for loan (negative: on order or in processing).
_STATUS_SUBFIELDS: dict[ItemStatus, tuple[str, str]] = {
    ItemStatus.WITHDRAWN: ("0", "1"),
    ItemStatus.LOST: ("1", "1"),
    ItemStatus.MISSING: ("1", "4"),
    ItemStatus.DAMAGED: ("4", "1"),
    ItemStatus.NOT_FOR_LOAN: ("7", "1"),
    ItemStatus.IN_PROCESSING: ("7", "-1"),
}


@dataclass(frozen=True, slots=True)
class _Codes:
    branches: dict[int, str]
    types: dict[int, str]


def _holding(item: Item, codes: _Codes) -> Field:
    subfields = [
        Subfield("a", codes.branches[item.home_branch_id]),
        Subfield("b", codes.branches[item.current_branch_id]),
        Subfield("y", codes.types[item.item_type_id]),
        Subfield("p", item.barcode),
    ]
    for code, value in (
        ("o", item.call_number),
        ("c", item.location),
        ("8", item.collection),
        ("g", None if item.price_minor is None else money_text(item.price_minor, "")),
    ):
        if value:
            subfields.append(Subfield(code, value))
    flag = _STATUS_SUBFIELDS.get(item.status)
    if flag is not None:
        subfields.append(Subfield(*flag))
    return Field(tag="952", indicators=Indicators(" ", " "), subfields=subfields)


def _record_of(bib: BibRecord) -> Record:
    """The stored MARC record without its 952s, or one made from the columns."""
    if bib.marc is not None:
        record = Record(data=bib.marc, to_unicode=True, force_utf8=True)
        record.remove_fields("952")
        return record
    record = Record(force_utf8=True)
    if bib.control_number:
        record.fields.append(Field(tag="001", data=bib.control_number))
    if bib.isbn:
        record.fields.append(
            Field(
                tag="020",
                indicators=Indicators(" ", " "),
                subfields=[Subfield("a", bib.isbn)],
            )
        )
    if bib.author:
        record.fields.append(
            Field(
                tag="100",
                indicators=Indicators("1", " "),
                subfields=[Subfield("a", bib.author)],
            )
        )
    record.fields.append(
        Field(
            tag="245",
            indicators=Indicators("0", "0"),
            subfields=[Subfield("a", bib.title)],
        )
    )
    publication = [
        Subfield(code, value)
        for code, value in (("b", bib.publisher), ("c", bib.publication_year))
        if value
    ]
    if publication:
        record.fields.append(
            Field(tag="264", indicators=Indicators(" ", "1"), subfields=publication)
        )
    return record
