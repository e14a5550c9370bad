"""The public layout view: fixed fields with widths and offsets, variable fields
with codes and names, read-only, and in step with what the encoder writes."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from sip2server.protocol import (
    CheckoutRequest,
    FieldKind,
    HoldMode,
    InvalidFieldValue,
    PatronInformationResponse,
    UnknownCode,
    encode,
    layout_view,
    layout_views,
)


def test_checkout_request_fixed_fields_have_widths_and_offsets() -> None:
    """11: sc_renewal_policy at 2, no_block at 3, the two dates at 4 and 22."""
    view = layout_view("11")

    assert view is not None
    assert [
        ("sc_renewal_policy", 1, 2, FieldKind.FLAG),
        ("no_block", 1, 3, FieldKind.FLAG),
        ("transaction_date", 18, 4, FieldKind.DATE),
        ("nb_due_date", 18, 22, FieldKind.DATE),
    ] == [(f.name, f.width, f.offset, f.kind) for f in view.fixed]
    assert 38 == view.fixed_width


def test_checkout_request_variable_fields_in_spec_order_with_required_marks() -> None:
    """11 writes AO AA AB AC (required) then CH AD BO BI, as the spec orders them."""
    view = layout_view(CheckoutRequest)

    assert view is not None
    assert [
        ("AO", "institution_id", True),
        ("AA", "patron_identifier", True),
        ("AB", "item_identifier", True),
        ("AC", "terminal_password", True),
        ("CH", "item_properties", False),
        ("AD", "patron_password", False),
        ("BO", "fee_acknowledged", False),
        ("BI", "cancel", False),
    ] == [(f.code, f.name, f.required) for f in view.variable]
    assert all(f.width is None and f.offset is None for f in view.variable)


def test_patron_information_response_lists_repeatable_and_group_fields() -> None:
    """64: AU is repeatable; FA to FG follow as the fee_details group."""
    view = layout_view("64")

    assert view is not None
    charged = view.field("AU")
    assert charged is not None
    assert ("charged_items", True, None) == (
        charged.name,
        charged.repeatable,
        charged.group,
    )
    fees = [f for f in view.variable if f.group is not None]
    assert ["FA", "FB", "FC", "FD", "FE", "FF", "FG"] == [f.code for f in fees]
    assert {"fee_details"} == {f.group for f in fees}
    assert all(f.repeatable for f in fees)
    assert view is layout_view(PatronInformationResponse)


def test_field_looks_up_by_code_then_by_name() -> None:
    """`field` finds a variable field by code or name and a fixed one by name;
    a name of the fee group or an unknown key finds nothing."""
    view = layout_view("64")

    assert view is not None
    by_code, by_name = view.field("AE"), view.field("personal_name")
    assert by_code is not None
    assert by_code is by_name
    fixed = view.field("charged_items_count")
    assert fixed is not None
    # 2 (command) + 14 (patron status) + 3 + 18 + 4 (holds) + 4 (overdue) = 45
    assert (4, 45) == (fixed.width, fixed.offset)
    assert view.field("fee_identifier") is None
    assert view.field("ZZ") is None


def test_unknown_commands_and_types_have_no_view() -> None:
    """A code SIP2 2.00 lacks, or a class that is no message, gives None."""
    assert layout_view("XX") is None
    assert layout_view(int) is None  # type: ignore[arg-type]


def test_every_message_has_one_view() -> None:
    """All 31 messages of SIP2 2.00 have a view, one per command."""
    commands = [view.command for view in layout_views()]

    assert 31 == len(commands) == len(set(commands))
    assert {"93", "94", "96", "97", "99", "98", "63", "64", "37", "38"} <= set(commands)


def test_views_are_read_only() -> None:
    """Neither a layout view nor a field view can be changed."""
    view = layout_view("11")

    assert view is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.command = "12"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.fixed[0].width = 5  # type: ignore[misc]
    assert isinstance(view.fixed, tuple)
    assert isinstance(view.variable, tuple)


def test_offsets_cut_the_encoders_fixed_fields() -> None:
    """Slicing an encoded 11 at each fixed field's offset and width gives that
    field's wire text."""
    message = CheckoutRequest(
        sc_renewal_policy=True,
        no_block=False,
        transaction_date=dt.datetime(2026, 12, 4, 9, 30, 0),
        nb_due_date=None,
        institution_id="CITY",
        patron_identifier="21",
        item_identifier="31",
        terminal_password="",
    )
    frame = encode(message).decode()
    view = layout_view("11")

    assert view is not None
    cut = {
        f.name: frame[f.offset : f.offset + f.width]  # type: ignore[operator]
        for f in view.fixed
    }
    assert {
        "sc_renewal_policy": "Y",
        "no_block": "N",
        "transaction_date": "20261204    093000",
        "nb_due_date": " " * 18,
    } == cut
    assert frame[2 + view.fixed_width :].startswith("AOCITY|")


def test_read_gives_the_decoders_value_or_its_error() -> None:
    """`read` turns wire text into the value the decoder makes, and refuses
    text the field cannot hold with the decoder's errors."""
    hold = layout_view("15")
    info = layout_view("63")

    assert hold is not None
    assert info is not None
    mode = hold.field("hold_mode")
    start = info.field("BP")
    date = hold.field("transaction_date")
    assert mode is not None
    assert start is not None
    assert date is not None
    assert HoldMode.ADD == mode.read("+")
    assert 5 == start.read("5")
    assert dt.datetime(2026, 12, 4, 9, 30) == date.read("20261204    093000")
    with pytest.raises(UnknownCode) as unknown:
        mode.read("?")
    assert "hold_mode" == unknown.value.field
    with pytest.raises(InvalidFieldValue) as bad:
        start.read("five")
    assert ("BP", "five", "63") == (bad.value.field, bad.value.value, bad.value.command)
