"""My account says what each fee is for and how much of it is owed.

Finding A5 of the second fresh-user walk of issue #6: the account showed only
the total ("Fees owed: $2.30"), so a patron refused for fines could not see
why. Against the real server and the demo library; the fees are charged to
Bob through the core, as staff at the desk would.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from ils.db import Database
from ils.demo import patron_barcode
from ils.fees import FeeService
from ils.models import FeeKind
from kiosk.i18n import Catalogues
from kiosk.present import Presenter
from kiosk.wording import Wording
from tests.kiosk.conftest import LiveServer
from tests.kiosk.test_session import sign_in, start_kiosk

BOB = patron_barcode(2)


@pytest_twisted.ensureDeferred
async def test_each_fee_is_listed_with_its_kind_and_amount(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Bob owes $1.50 for an overdue book and $0.80 for damage: both are
    listed, in English and in French, beside the $2.30 total."""
    database = Database(live_server.library.url)
    try:
        fees = FeeService(database)
        fees.charge(
            BOB, kind=FeeKind.OVERDUE, amount_minor=150, description="late", by="t"
        )
        fees.charge(
            BOB, kind=FeeKind.DAMAGE, amount_minor=80, description="torn", by="t"
        )
    finally:
        database.dispose()
    kiosk = await start_kiosk(live_server, tmp_path)
    try:
        await sign_in(kiosk.check, card=BOB)
        await kiosk.check.open_account()
    finally:
        kiosk.link.stop()
        kiosk.journal.close()

    account = kiosk.check.account
    assert account is not None
    words = Presenter(Catalogues(["en", "fr"]), Wording.load())
    english = [words.fee("en", fee, account.currency) for fee in account.fees]
    french = [words.fee("fr", fee, account.currency) for fee in account.fees]
    assert "Fees owed: $2.30" == words.fees("en", account.fee_total, account.currency)
    assert ["Overdue fine", "Damage charge"] == [what for what, _ in english]
    assert ["$1.50, since", "$0.80, since"] == [owed[:12] for _, owed in english]
    assert ["Pénalité de retard", "Frais de dégradation"] == [w for w, _ in french]
    assert ["1,50 $, depuis le", "0,80 $, depuis le"] == [o[:17] for _, o in french]
