"""`ils library`: show and set the institution (code, name, currency) and its
branches (name, time zone).

Layer: `ils`. Imports click, SQLAlchemy and the core; never SIP2, Twisted or
Kivy. The output goes to the terminal of the librarian who ran the command.

A library moved in by the importers starts with an institution `DEFAULT` in
USD and branches named by their codes in UTC; these commands put that right,
best before loans, holds and fees are imported (dates without a zone are read
in the branch's time zone, amounts in the institution's currency). The currency
is not changed while fees or payments are recorded in another one: nothing
converts amounts.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils.currency import exponent
from ils.models import Branch, Fee, Institution, Payment
from ils.results import CirculationRefused
from ils.rules.commands import db_option, open_database
from ils.text import plural


class LibrarySetupError(ValueError):
    """A setting that cannot be made, with a message for the librarian."""


def _institution(session: Session, code: str | None) -> Institution | None:
    """The institution named, or the only one; None when there are none."""
    if code is not None:
        found = session.scalars(
            sa.select(Institution).where(Institution.code == code)
        ).first()
        if found is None:
            raise LibrarySetupError(f"no institution {code} in this library")
        return found
    every = session.scalars(sa.select(Institution).order_by(Institution.id)).all()
    if len(every) > 1:
        codes = ", ".join(institution.code for institution in every)
        raise LibrarySetupError(
            f"this library has {len(every)} institutions ({codes});"
            " say which with --institution CODE"
        )
    return every[0] if every else None


def _checked_currency(session: Session, institution: Institution, code: str) -> str:
    currency = code.upper()
    try:
        exponent(currency)
    except CirculationRefused:
        raise LibrarySetupError(
            f"currency {code!r} is not an ISO 4217 code known here"
        ) from None
    if currency == institution.currency:
        return currency
    recorded = (
        session.scalar(
            sa.select(sa.func.count()).select_from(Fee).where(Fee.currency != currency)
        )
        or 0
    )
    recorded += (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Payment)
            .where(Payment.currency != currency)
        )
        or 0
    )
    if recorded:
        raise LibrarySetupError(
            f"cannot change the currency to {currency}:"
            f" {plural(recorded, 'fee or payment', 'fees or payments')}"
            f" {'is' if recorded == 1 else 'are'} recorded in {institution.currency},"
            " and nothing converts them"
        )
    return currency


def set_institution(
    session: Session,
    *,
    which: str | None = None,
    code: str | None = None,
    name: str | None = None,
    currency: str | None = None,
) -> Institution:
    """Change the institution `which` (by default the only one), or create it
    when the library has none (then `code` is needed).

    Raises:
        LibrarySetupError: an unknown institution or currency, several to choose
            from, a currency change with fees in another, or a code in use.
    """
    institution = _institution(session, which)
    if institution is None:
        if not code:
            raise LibrarySetupError(
                "this library has no institution yet; give it one with --code"
            )
        institution = Institution(code=code, name=name or code, currency="USD")
        session.add(institution)
    elif code and code != institution.code:
        taken = session.scalar(
            sa.select(Institution.id).where(Institution.code == code)
        )
        if taken is not None:
            raise LibrarySetupError(f"institution code {code} is already in use")
        institution.code = code
    if name:
        institution.name = name
    if currency:
        institution.currency = _checked_currency(session, institution, currency)
    session.flush()
    return institution


def set_branch(
    session: Session,
    code: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    institution: str | None = None,
) -> tuple[Branch, bool]:
    """Change branch `code`, or create it in the institution (by default the only
    one); returns the branch and whether it is new.

    Raises:
        LibrarySetupError: an unknown time zone or institution, or no
            institution to create the branch in.
    """
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise LibrarySetupError(
                f"time zone {timezone!r} is not a known IANA zone"
                " (such as Europe/London or America/Chicago)"
            ) from None
    branch = session.scalars(sa.select(Branch).where(Branch.code == code)).first()
    created = branch is None
    if branch is None:
        owner = _institution(session, institution)
        if owner is None:
            raise LibrarySetupError(
                "this library has no institution yet; set one first with"
                " `ils library set --code CODE --name NAME --currency XXX`"
            )
        branch = Branch(code=code, name=name or code, institution_id=owner.id)
        branch.timezone = timezone or "UTC"
        session.add(branch)
    if name:
        branch.name = name
    if timezone:
        branch.timezone = timezone
    session.flush()
    return branch, created


def describe(session: Session) -> list[str]:
    """One line per institution and per branch, as `ils library show` prints."""
    lines: list[str] = []
    institutions = session.scalars(sa.select(Institution).order_by(Institution.id))
    for institution in institutions:
        lines.append(
            f"institution {institution.code}: {institution.name},"
            f" currency {institution.currency}"
        )
        branches = session.scalars(
            sa.select(Branch)
            .where(Branch.institution_id == institution.id)
            .order_by(Branch.code)
        )
        for branch in branches:
            lines.append(
                f"  branch {branch.code}: {branch.name}, time zone {branch.timezone}"
            )
    return lines or ["no institution yet: set one with `ils library set --code`"]


@click.group("library")
def library_group() -> None:
    """The institution (code, name, currency) and its branches (name, time zone).

    Set them before importing loans, holds and fees: dates without a zone are
    read in the branch's time zone, amounts in the institution's currency.
    """


@library_group.command("show")
@db_option
def show_command(url: str | None) -> None:
    """Print the institution and its branches."""
    with open_database(url) as database, database.read() as session:
        for line in describe(session):
            click.echo(line)


@library_group.command("set")
@click.option("--institution", "which", help="Which one, when there are several.")
@click.option("--code", help="The institution's code (SIP2's AO).")
@click.option("--name", help="The institution's name.")
@click.option("--currency", help="ISO 4217 code of its money, such as GBP or EUR.")
@db_option
def set_command(
    which: str | None,
    code: str | None,
    name: str | None,
    currency: str | None,
    url: str | None,
) -> None:
    """Change the institution's code, name or currency (or create it)."""
    if not (code or name or currency):
        raise click.UsageError("say what to set: --code, --name or --currency")
    with open_database(url) as database:
        try:
            with database.transaction() as session:
                institution = set_institution(
                    session, which=which, code=code, name=name, currency=currency
                )
                line = (
                    f"institution {institution.code}: {institution.name},"
                    f" currency {institution.currency}"
                )
        except LibrarySetupError as error:
            raise click.ClickException(str(error)) from None
    click.echo(line)


@library_group.command("branch")
@click.argument("code")
@click.option("--name", help="The branch's name.")
@click.option("--timezone", help="IANA time zone, such as Europe/London.")
@click.option("--institution", help="Whose branch a new one is, if several.")
@db_option
def branch_command(
    code: str,
    name: str | None,
    timezone: str | None,
    institution: str | None,
    url: str | None,
) -> None:
    """Create branch CODE or change its name or time zone."""
    with open_database(url) as database:
        try:
            with database.transaction() as session:
                branch, created = set_branch(
                    session,
                    code,
                    name=name,
                    timezone=timezone,
                    institution=institution,
                )
                line = (
                    f"{'created' if created else 'updated'} branch {branch.code}:"
                    f" {branch.name}, time zone {branch.timezone}"
                )
        except LibrarySetupError as error:
            raise click.ClickException(str(error)) from None
    click.echo(line)
