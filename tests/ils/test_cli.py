"""The `ils` command line: lazy commands, and a broken part not breaking the rest."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ils import cli


@pytest.fixture
def broken_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register a command whose module does not exist, as a half-installed part."""
    targets = dict(cli.CORE_COMMANDS)
    targets["ghost"] = "no_such_package.cli:ghost"
    monkeypatch.setattr(cli, "CORE_COMMANDS", targets)


@pytest.mark.usefixtures("broken_command")
def test_help_lists_every_command_even_with_one_broken() -> None:
    """`ils --help` still works and marks the broken command as not available."""
    result = CliRunner().invoke(cli.main, ["--help"])

    assert 0 == result.exit_code, result.output
    assert "ghost" in result.output
    assert "(not available here)" in result.output
    assert "import" in result.output


@pytest.mark.usefixtures("broken_command")
def test_running_a_broken_command_says_why_in_one_line() -> None:
    """The broken command exits 1 with the module it could not load, no traceback."""
    result = CliRunner().invoke(cli.main, ["ghost", "--anything"])

    assert 1 == result.exit_code
    assert "the `ghost` command is not available" in result.output
    assert "no_such_package" in result.output
    assert "Traceback" not in result.output
