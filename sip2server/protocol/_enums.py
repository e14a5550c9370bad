"""Coded values of SIP2 2.00: every enumeration's value is its wire code.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.
"""

from __future__ import annotations

import enum


class Tristate(enum.Enum):
    """A Y/N/U flag (magnetic media, desensitize): U means "unknown"."""

    YES = "Y"
    NO = "N"
    UNKNOWN = "U"


class ScStatusCode(enum.Enum):
    """Status code of the SC in 99."""

    OK = "0"
    PRINTER_OUT_OF_PAPER = "1"
    SHUTTING_DOWN = "2"


class Language(enum.Enum):
    """Language code (3 digits) of 23, 24, 26, 63 and 64."""

    UNKNOWN = "000"
    ENGLISH = "001"
    FRENCH = "002"
    GERMAN = "003"
    ITALIAN = "004"
    DUTCH = "005"
    SWEDISH = "006"
    FINNISH = "007"
    SPANISH = "008"
    DANISH = "009"
    PORTUGUESE = "010"
    CANADIAN_FRENCH = "011"
    NORWEGIAN = "012"
    HEBREW = "013"
    JAPANESE = "014"
    RUSSIAN = "015"
    ARABIC = "016"
    POLISH = "017"
    GREEK = "018"
    CHINESE = "019"
    KOREAN = "020"
    NORTH_AMERICAN_SPANISH = "021"
    TAMIL = "022"
    MALAY = "023"
    UNITED_KINGDOM = "024"
    ICELANDIC = "025"
    BELGIAN = "026"
    TAIWANESE = "027"


class CirculationStatus(enum.Enum):
    """Circulation status (2 digits) of an item in 18."""

    OTHER = "01"
    ON_ORDER = "02"
    AVAILABLE = "03"
    CHARGED = "04"
    CHARGED_NOT_TO_BE_RECALLED = "05"
    IN_PROCESS = "06"
    RECALLED = "07"
    WAITING_ON_HOLD_SHELF = "08"
    WAITING_TO_BE_RESHELVED = "09"
    IN_TRANSIT = "10"
    CLAIMED_RETURNED = "11"
    LOST = "12"
    MISSING = "13"


class SecurityMarker(enum.Enum):
    """Security marker (2 digits) of an item in 18."""

    OTHER = "00"
    NONE = "01"
    TATTLE_TAPE = "02"
    WHISPER_TAPE = "03"


class FeeType(enum.Enum):
    """Fee type (2 digits): fixed in 18 and 37, field BT in 12 and 30."""

    OTHER = "01"
    ADMINISTRATIVE = "02"
    DAMAGE = "03"
    OVERDUE = "04"
    PROCESSING = "05"
    RENTAL = "06"
    REPLACEMENT = "07"
    COMPUTER_ACCESS = "08"
    HOLD_FEE = "09"


class PaymentType(enum.Enum):
    """Payment type (2 digits) of 37."""

    CASH = "00"
    VISA = "01"
    CREDIT_CARD = "02"


class MediaType(enum.Enum):
    """Media type (3 digits), field CK."""

    OTHER = "000"
    BOOK = "001"
    MAGAZINE = "002"
    BOUND_JOURNAL = "003"
    AUDIO_TAPE = "004"
    VIDEO_TAPE = "005"
    CD_OR_CD_ROM = "006"
    DISKETTE = "007"
    BOOK_WITH_DISKETTE = "008"
    BOOK_WITH_CD = "009"
    BOOK_WITH_AUDIO_TAPE = "010"


class HoldMode(enum.Enum):
    """Hold mode of 15: add, delete or change a hold."""

    ADD = "+"
    DELETE = "-"
    CHANGE = "*"


class HoldType(enum.Enum):
    """Hold type (1 digit), field BY of 15."""

    OTHER = "1"
    ANY_COPY_OF_TITLE = "2"
    SPECIFIC_COPY = "3"
    ANY_COPY_AT_SINGLE_BRANCH = "4"


class AlertType(enum.Enum):
    """Alert type of 10 (CV, a 3M extension that Koha, Evergreen and FOLIO send)."""

    NONE = "00"
    HOLD_AT_THIS_LOCATION = "01"
    HOLD_FOR_OTHER_LOCATION = "02"
    INTERLIBRARY_LOAN = "03"
    SEND_TO_OTHER_BRANCH = "04"
    DATA_CORRUPTION = "98"
    OTHER = "99"
