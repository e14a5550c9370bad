"""Write ils/demo_data/classics.mrc, the demo library's small catalogue.

Usage: python scripts/make_demo_marc.py [OUTPUT]   (default: ils/demo_data/classics.mrc)

The records are written here by hand: public-domain classics with a made-up
publisher ("Lantern House"), Dewey-style call numbers and, for some of them,
Koha-style 952 holdings with fixed item barcodes ("3" + "1234" + serial + Luhn
check digit). The rest get generated items when `ils demo` imports the file. A
few titles and names are not ASCII, so that the import exercises UTF-8. The
output is deterministic: running the script again gives the same bytes, which a
test checks against the committed file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pymarc import Field, Indicators, Record, Subfield

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "ils" / "demo_data" / "classics.mrc"

PLACE = "Springfield"
PUBLISHER = "Lantern House"
# Leader: new record, language material, monograph, UTF-8 (position 9 "a").
LEADER = "00000nam a2200000 i 4500"
FILM_LEADER = "00000ngm a2200000 i 4500"


@dataclass(frozen=True)
class Copy:
    """One 952 holding: item serial, home branch, item type, and Koha flags."""

    serial: int
    branch: str = "MAIN"
    item_type: str = "BOOK"
    price: str = "12.50"
    location: str = "ADULT"
    not_for_loan: bool = False


@dataclass(frozen=True)
class Classic:
    """A catalogue entry as written by hand."""

    author: str
    title: str
    subtitle: str | None
    year: int
    call_number: str
    copies: tuple[Copy, ...] = field(default=())
    film: bool = False
    language: str = "eng"


CLASSICS: tuple[Classic, ...] = (
    Classic(
        "Austen, Jane",
        "Pride and prejudice",
        None,
        1813,
        "823.7 AUS",
        (Copy(1), Copy(2, branch="EAST")),
    ),
    Classic(
        "Melville, Herman",
        "Moby-Dick, or, The whale",
        None,
        1851,
        "813.3 MEL",
        (Copy(3),),
    ),
    Classic(
        "Shelley, Mary Wollstonecraft",
        "Frankenstein, or, The modern Prometheus",
        None,
        1818,
        "823.7 SHE",
        (Copy(4), Copy(5, branch="EAST", price="9.99")),
    ),
    Classic(
        "Brontë, Charlotte",
        "Jane Eyre",
        "an autobiography",
        1847,
        "823.8 BRO",
        (Copy(6),),
    ),
    Classic(
        "Hugo, Victor",
        "Les misérables",
        None,
        1862,
        "843.7 HUG",
        (Copy(7, branch="EAST"),),
        language="fre",
    ),
    Classic(
        "Flaubert, Gustave",
        "Madame Bovary",
        "mœurs de province",
        1857,
        "843.8 FLA",
        (Copy(8),),
        language="fre",
    ),
    Classic(
        "Carroll, Lewis",
        "Alice's adventures in Wonderland",
        None,
        1865,
        "823.8 CAR",
        (Copy(9, location="CHILDREN"), Copy(10, location="CHILDREN")),
    ),
    Classic(
        "Roget, Peter Mark",
        "Thesaurus of English words and phrases",
        "classified and arranged so as to facilitate the expression of ideas",
        1852,
        "423 ROG",
        (Copy(11, item_type="REF", location="REFERENCE", not_for_loan=True),),
    ),
    Classic(
        "Murnau, F. W.",
        "Nosferatu",
        "eine Symphonie des Grauens",
        1922,
        "791.43 NOS",
        (Copy(12, item_type="DVD", price="19.99"),),
        film=True,
        language="ger",
    ),
    Classic("Brontë, Emily", "Wuthering Heights", None, 1847, "823.8 BRO"),
    Classic("Dickens, Charles", "Great expectations", None, 1861, "823.8 DIC"),
    Classic("Tolstoy, Leo", "War and peace", None, 1869, "891.73 TOL"),
    Classic("Dostoyevsky, Fyodor", "Crime and punishment", None, 1866, "891.73 DOS"),
    Classic(
        "Cervantes Saavedra, Miguel de",
        "El ingenioso hidalgo don Quijote de la Mancha",
        None,
        1605,
        "863.3 CER",
        language="spa",
    ),
    Classic("Twain, Mark", "Adventures of Huckleberry Finn", None, 1884, "813.4 TWA"),
    Classic("Stevenson, Robert Louis", "Treasure Island", None, 1883, "823.8 STE"),
    Classic(
        "Doyle, Arthur Conan",
        "The adventures of Sherlock Holmes",
        None,
        1892,
        "823.8 DOY",
    ),
    Classic("Wilde, Oscar", "The picture of Dorian Gray", None, 1890, "823.8 WIL"),
    Classic("Stoker, Bram", "Dracula", None, 1897, "823.8 STO"),
    Classic("Wells, H. G.", "The time machine", "an invention", 1895, "823.8 WEL"),
    Classic(
        "Verne, Jules",
        "Vingt mille lieues sous les mers",
        None,
        1870,
        "843.8 VER",
        language="fre",
    ),
    Classic(
        "Goethe, Johann Wolfgang von",
        "Faust",
        "eine Tragödie",
        1808,
        "832.6 GOE",
        language="ger",
    ),
    Classic("Alcott, Louisa May", "Little women", None, 1868, "813.4 ALC"),
    Classic(
        "Hawthorne, Nathaniel",
        "The scarlet letter",
        "a romance",
        1850,
        "813.3 HAW",
    ),
    Classic(
        "Dumas, Alexandre",
        "Le comte de Monte-Cristo",
        None,
        1844,
        "843.7 DUM",
        language="fre",
    ),
    Classic(
        "Kafka, Franz", "Die Verwandlung", None, 1915, "833.912 KAF", language="ger"
    ),
)


def item_barcode(serial: int) -> str:
    """ "3" + "1234" + the eight-digit serial + the Luhn check digit."""
    payload = f"31234{serial:08d}"
    total = 0
    for place, character in enumerate(reversed(payload)):
        value = int(character) * (2 if place % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return payload + str((10 - total % 10) % 10)


def _field(tag: str, indicators: str, *pairs: tuple[str, str]) -> Field:
    return Field(
        tag=tag,
        indicators=Indicators(indicators[0], indicators[1]),
        subfields=[Subfield(code=code, value=value) for code, value in pairs],
    )


def record_for(number: int, classic: Classic) -> Record:
    """The MARC 21 record of one classic, punctuated as a cataloguer writes it."""
    fields: list[Field] = []
    fields.append(Field(tag="001", data=f"demo{number:04d}"))
    fields.append(Field(tag="003", data="DEMO"))
    # 008 (40 characters): entered 2026-01-01, single date, the year, place
    # unknown, 17 blanks for the material-specific positions, language.
    fixed = f"260101s{classic.year}    xx {' ' * 17}{classic.language} d"
    assert len(fixed) == 40
    fields.append(Field(tag="008", data=fixed))

    fields.append(_field("100", "1 ", ("a", f"{classic.author},"), ("e", "author.")))
    title_pairs = [("a", f"{classic.title} :" if classic.subtitle else classic.title)]
    if classic.subtitle:
        title_pairs.append(("b", classic.subtitle))
    title_pairs[-1] = (title_pairs[-1][0], f"{title_pairs[-1][1]} /")
    name = classic.author.split(", ")
    statement = " ".join(reversed(name)) if len(name) == 2 else classic.author
    title_pairs.append(("c", f"{statement}."))
    fields.append(_field("245", "10", *title_pairs))
    fields.append(
        _field(
            "264",
            " 1",
            ("a", f"{PLACE} :"),
            ("b", f"{PUBLISHER},"),
            ("c", f"{classic.year}."),
        )
    )
    fields.append(_field("092", "  ", ("a", classic.call_number)))

    for copy in classic.copies:
        pairs = [
            ("a", copy.branch),
            ("b", copy.branch),
            ("c", copy.location),
            ("g", copy.price),
            ("o", classic.call_number),
            ("p", item_barcode(copy.serial)),
            ("y", copy.item_type),
        ]
        if copy.not_for_loan:
            pairs.append(("7", "1"))
        fields.append(_field("952", "  ", *pairs))
    leader = FILM_LEADER if classic.film else LEADER
    return Record(leader=leader, fields=fields, force_utf8=True)


def build() -> bytes:
    """The whole file: every classic's record in ISO 2709, UTF-8."""
    return b"".join(
        record_for(number, classic).as_marc()
        for number, classic in enumerate(CLASSICS, start=1)
    )


def main(argv: list[str]) -> int:
    """Write the file named in argv (or the default) and say where."""
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    output.write_bytes(build())
    print(f"wrote {len(CLASSICS)} records to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
