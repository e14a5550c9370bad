"""The baseline server of `bench/load.py`: pysip2 with fixed replies.

Bench layer (a script folder, not part of the product): the PyPI `pysip2`
server, run as its own process by `bench/load.py --serve-baseline`, answering
fixed replies and touching no database. Imports `bench.make_library` and
`bench.load_mixes` for shared constants; it must not import `ils`, `sip2server`
or `bench.load` (which imports it).
"""

from __future__ import annotations

import warnings
from typing import Any

from bench.load_mixes import BRANCH
from bench.make_library import INSTITUTION_CODE


def serve_baseline() -> None:
    """Serve SIP2 with pysip2's server and fixed replies until killed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import anyio  # noqa: PLC0415
        import pysip2  # noqa: PLC0415

    app = pysip2.SIP2Server(institution_id=INSTITUTION_CODE, encoding="utf-8")

    @app.route(pysip2.LOGIN)
    async def login(req: Any, ctx: Any) -> Any:
        return pysip2.LoginResponse(ok="1")

    @app.route(pysip2.PATRON_INFORMATION)
    async def patron(req: Any, ctx: Any) -> Any:
        return pysip2.PatronInformationResponse(
            patron_status=" " * 14,
            language=req.language,
            transaction_date=ctx.now_18(),
            hold_items_count="0000",
            overdue_items_count="0000",
            charged_items_count="0003",
            fine_items_count="0000",
            recall_items_count="0000",
            unavailable_holds_count="0000",
            institution_id=req.institution_id,
            patron_identifier=req.patron_identifier,
            personal_name="Bench, Patron",
            valid_patron="Y",
            valid_patron_password="Y",
        )

    def lent(req: Any, ctx: Any, renewal_ok: str, item: str) -> dict[str, str]:
        # The fields a checkout and a renewal reply share, fixed but for these.
        return {
            "ok": "1",
            "renewal_ok": renewal_ok,
            "magnetic_media": "N",
            "desensitize": "Y",
            "transaction_date": ctx.now_18(),
            "institution_id": req.institution_id,
            "patron_identifier": req.patron_identifier,
            "item_identifier": item,
            "title_identifier": "Tide tables",
            "due_date": "20261225    235900",
        }

    @app.route(pysip2.CHECKOUT)
    async def checkout(req: Any, ctx: Any) -> Any:
        return pysip2.CheckoutResponse(**lent(req, ctx, "N", req.item_identifier))

    @app.route(pysip2.RENEW)
    async def renew(req: Any, ctx: Any) -> Any:
        return pysip2.RenewResponse(**lent(req, ctx, "Y", req.item_identifier or ""))

    @app.route(pysip2.CHECKIN)
    async def checkin(req: Any, ctx: Any) -> Any:
        return pysip2.CheckinResponse(
            ok="1",
            resensitize="Y",
            magnetic_media="N",
            alert="N",
            transaction_date=ctx.now_18(),
            institution_id=req.institution_id,
            item_identifier=req.item_identifier,
            permanent_location=BRANCH,
            sort_bin="A1",
        )

    @app.route(pysip2.ITEM_INFORMATION)
    async def item(req: Any, ctx: Any) -> Any:
        return pysip2.ItemInformationResponse(
            circulation_status="04",
            security_marker="02",
            fee_type="01",
            transaction_date=ctx.now_18(),
            item_identifier=req.item_identifier,
            title_identifier="Tide tables",
        )

    async def run() -> None:
        async with app.start(port=0) as port:
            print(f"pysip2 baseline listening on 127.0.0.1:{port}", flush=True)
            await anyio.sleep_forever()

    anyio.run(run)
