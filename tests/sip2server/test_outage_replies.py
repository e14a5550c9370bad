"""What a patron's reply says when the database could not be asked: the
refusal's text, and no BL, since whether the card is valid is not known."""

from __future__ import annotations

from datetime import datetime

from sip2server.app import circulation_for
from sip2server.protocol import (
    Language,
    PatronInformationRequest,
    PatronStatusRequest,
    encode,
)
from sip2server.session import UNAVAILABLE
from sip2server.startup_checks import check_database
from tests.sip2server.conftest import ADA, server_config, stock_library

NOW = datetime(2026, 12, 4, 10, 0)


def test_an_outage_reply_to_23_and_63_leaves_out_bl_and_an_unknown_card_keeps_it(
    sqlite_url: str,
) -> None:
    """Refused for an outage, 24 and 64 carry the screen text and no BL field;
    the same refusals not for an outage (an unknown card) carry BL N."""
    library = stock_library(sqlite_url)
    config = server_config(sqlite_url)
    account = config.accounts[0]
    try:
        circulation = circulation_for(
            library.database, check_database(library.database, config)
        )
        requests = (
            PatronStatusRequest(
                language=Language.UNKNOWN,
                transaction_date=NOW,
                institution_id="",
                patron_identifier=ADA,
                terminal_password="",
                patron_password="",
            ),
            PatronInformationRequest(
                language=Language.UNKNOWN,
                transaction_date=NOW,
                institution_id="",
                patron_identifier=ADA,
            ),
        )
        for request in requests:
            outage = circulation.refuse(request, UNAVAILABLE, account, outage=True)
            unknown = circulation.refuse(request, "Not known.", account)
            assert outage is not None
            assert unknown is not None
            outage_frame = encode(outage, sequence=None, error_detection=False)
            unknown_frame = encode(unknown, sequence=None, error_detection=False)

            assert b"|BL" not in outage_frame, outage_frame
            assert b"not available just now" in outage_frame
            assert b"|BLN" in unknown_frame, unknown_frame
    finally:
        library.database.dispose()
