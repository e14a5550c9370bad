"""Terminal policy: what it accepts, what it refuses (with the key), and the
template language's limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sip2server.answers.output import apply_policy
from sip2server.config import ConfigError, ServerConfig, parse_config
from sip2server.policy import TerminalPolicy
from sip2server.protocol import (
    CheckinResponse,
    CirculationStatus,
    FeeType,
    ItemInformationResponse,
    SecurityMarker,
)
from sip2server.templates import Template, TemplateError


def test_templates_render_listed_names_with_format_specs() -> None:
    """`{patron.surname:.3}` cuts to three characters; literal text stays."""
    template = Template(
        "{patron.surname:.3}/{patron.home_branch_code}", "k", ("patron",)
    )
    values = {"patron": {"surname": "Lindqvist", "home_branch_code": "NORTH"}}
    assert "Lin/NORTH" == template.render(values)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{patron.__class__}", "not a patron name"),
        ("{patron.surname.upper}", "is not one of"),
        ("{patron[0]}", "is not one of"),
        ("{item.title}", "is not one of"),
        ("{patron.surname!r}", "no conversions"),
        ("{patron.surname:{patron.email}}", "no conversions or nesting"),
        ("{patron.surname:d}", "Unknown format code"),
        ("{patron.surname", "expected '}'"),
        ("{}", "is not one of"),
    ],
)
def test_templates_refuse_anything_beyond_the_listed_names(
    text: str, words: str
) -> None:
    """Attribute access, indexing, other roots, conversions, nesting and bad
    specs are refused when the template is read, naming the key."""
    with pytest.raises(TemplateError) as raised:
        Template(text, "patron_fields.PB", ("patron",))
    assert str(raised.value).startswith("patron_fields.PB: ")
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        ({"sort_bin": [{"bin": "1", "when": ["shelf = 3"]}]}, "sort_bin[0].when[0]"),
        ({"hide_fields": ["AZ"]}, "error detection"),
        ({"hide_fields": ["af"]}, "pattern"),
        ({"screen_messages": {"no_such_reason": "x"}}, "not a refusal reason"),
        ({"screen_rewrites": [{"pattern": "("}]}, "not a regular expression"),
        ({"patron_fields": {"PB": "{patron.password}"}}, "patron_fields.PB"),
        (
            {"screen_messages": {"wrong_pin": "{patron.pin}"}},
            "screen_messages.wrong_pin",
        ),
        ({"security_marker": "07"}, "security_marker"),
        ({"currency": "pounds"}, "currency"),
        ({"hold_patron_id": "half"}, "hold_patron_id"),
        ({"unknown_key": True}, "unknown_key"),
    ],
)
def test_bad_policies_are_refused_with_the_key(
    policy: dict[str, object], words: str
) -> None:
    """Each mistake in a policy table is a validation error that names it."""
    with pytest.raises(ValidationError) as raised:
        TerminalPolicy.model_validate(policy)
    assert words in str(raised.value)


def test_hidden_required_field_is_sent_empty_and_optional_left_out() -> None:
    """Hiding AQ (required in 10) blanks it; hiding CS drops it; AF rewrites
    apply in order and an AF rewritten to nothing is dropped."""
    policy = TerminalPolicy.model_validate(
        {
            "hide_fields": ["AQ", "CS"],
            "screen_rewrites": [
                {"pattern": "^Checked in", "replace": "Returned"},
                {"pattern": "^Internal:.*", "replace": ""},
            ],
        }
    )
    response = CheckinResponse(
        ok=True,
        resensitize=True,
        alert=False,
        transaction_date=None,
        institution_id="CITY",
        item_identifier="31234000000016",
        permanent_location="NORTH",
        call_number="551.46 TUP",
        screen_message=("Checked in.", "Internal: bin 4"),
    )
    shown = apply_policy(response, policy)
    assert isinstance(shown, CheckinResponse)
    assert "" == shown.permanent_location
    assert shown.call_number is None
    assert ("Returned.",) == shown.screen_message


def test_allow_fields_keeps_only_listed_optional_fields() -> None:
    """With allow_fields = [CF], an 18 keeps AB and AJ (required) and CF only;
    extra fields not listed go too."""
    policy = TerminalPolicy.model_validate({"allow_fields": ["CF"]})
    response = ItemInformationResponse(
        circulation_status=CirculationStatus.AVAILABLE,
        security_marker=SecurityMarker.TATTLE_TAPE,
        fee_type=FeeType.OTHER,
        transaction_date=None,
        hold_queue_length=2,
        item_identifier="31234000000016",
        title_identifier="Tide Tables",
        owner="NORTH",
        call_number="551.46",
        extra_fields=(("CT", "WEST"),),
    )
    shown = apply_policy(response, policy)
    assert isinstance(shown, ItemInformationResponse)
    assert (2, "31234000000016", "Tide Tables") == (
        shown.hold_queue_length,
        shown.item_identifier,
        shown.title_identifier,
    )
    assert (None, None, ()) == (shown.owner, shown.call_number, shown.extra_fields)


def _config(
    policy: dict[str, object], defaults: dict[str, object] | None = None
) -> ServerConfig:
    return parse_config(
        {
            "database": {"url": "sqlite:///unused.sqlite3"},
            "institution": {"CITY": {"policy": defaults or {}}},
            "accounts": [
                {
                    "login": "sorter",
                    "password": "x",
                    "institution": "CITY",
                    "location": "NORTH",
                    "policy": policy,
                }
            ],
        },
        "sip2server.toml",
    )


def test_config_error_names_the_account_policy_key() -> None:
    """A bad sort-bin condition in an account's policy is reported with the file,
    the account's key path and the rule's own key."""
    with pytest.raises(ConfigError) as raised:
        _config({"sort_bin": [{"bin": "1", "when": ["shelf = 3"]}]})
    assert str(raised.value).startswith(
        "sip2server.toml: accounts[0].policy.sort_bin: sort_bin[0].when[0]: "
        "unknown field 'shelf'"
    )


def test_institution_policy_is_merged_under_the_accounts_key_by_key() -> None:
    """The institution's security marker and hidden fields apply unless the
    account gives its own; the account's keys win."""
    config = _config(
        {"hide_fields": ["BE"]},
        defaults={"security_marker": "03", "hide_fields": ["CK"]},
    )
    policy = config.accounts[0].policy
    assert ("03", ("BE",)) == (policy.security_marker, policy.hide_fields)
