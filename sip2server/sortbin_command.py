"""`ils sort-bin`: which sort bin (CL) an item would get, and why.

Layer: `sip2server`. Reads the server's configuration and the library database
(through the core's read-only look-up); changes nothing. For a library's staff
setting up a sorter: it prints the facts the rules see for the item, each rule
in order with whether it matched, and the bin.

The facts are those a checkin at the account's branch (or --branch) would give,
as far as they can be told without checking the item in; `--fact NAME=VALUE`
sets one by hand to try other cases.
"""

from __future__ import annotations

import click

from ils.circulation import Circulation
from ils.db import Database
from sip2server.answers.common import policy_of
from sip2server.answers.items import predicted_facts
from sip2server.config import ConfigError, load_config
from sip2server.sortbins import SORT_FIELDS


@click.command("sort-bin")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The server's configuration file (its [[accounts]] policy.sort_bin rules).",
)
@click.option("--db", "db_url", help="Database URL; default: the file's [database].")
@click.option("--login", help="The SIP account whose rules apply; default: the first.")
@click.option("--branch", help="Where the item is returned; default: the account's.")
@click.option(
    "--fact",
    "facts",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set one fact by hand (repeatable), e.g. --fact hold=yes.",
)
@click.argument("item_barcode")
def sort_bin(  # noqa: PLR0917 - click passes every option by position
    config_path: str,
    db_url: str | None,
    login: str | None,
    branch: str | None,
    facts: tuple[str, ...],
    item_barcode: str,
) -> None:
    """Show the sort bin ITEM_BARCODE would get at checkin, rule by rule."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    accounts = {account.login: account for account in config.accounts}
    if login is not None and login not in accounts:
        raise click.ClickException(
            f"{config_path}: no account {login!r}; it has: {', '.join(accounts)}"
        )
    account = accounts[login] if login is not None else config.accounts[0]
    rules = policy_of(account).sort_bins

    database = Database(db_url or config.database.url)
    try:
        item = Circulation(database).item(item_barcode)
    finally:
        database.dispose()
    if item is None:
        raise click.ClickException(f"no item has the barcode {item_barcode!r}")
    seen = predicted_facts(item, branch or account.location)
    for text in facts:
        name, equals, value = text.partition("=")
        if not equals or name.strip() not in SORT_FIELDS:
            raise click.ClickException(
                f"--fact {text!r}: give NAME=VALUE with NAME one of: "
                + ", ".join(SORT_FIELDS)
            )
        seen[name.strip()] = value.strip()

    click.echo(f"Item {item.barcode}: {item.title}")
    click.echo(f"Account {account.login}, returned at {seen['branch']}")
    click.echo("Facts:")
    for name in SORT_FIELDS:
        click.echo(f"  {name:<14} {seen.get(name, '')}")
    if not rules.rules:
        click.echo("No sort_bin rules for this account: no CL is sent.")
        return
    click.echo("Rules, in order:")
    chosen = rules.rule_for(seen)
    for number, rule in enumerate(rules.rules):
        conditions = " and ".join(str(c) for c in rule.conditions) or "(always)"
        mark = "MATCH" if rule.matches(seen) else "no   "
        click.echo(f"  {mark} [{number}] bin {rule.bin}: {conditions}")
    if chosen is None:
        click.echo("No rule matched: no CL is sent.")
    else:
        click.echo(f"Sort bin (CL): {chosen.bin}")
