"""The kiosk's words in each language: gettext catalogues, switched at run time.

Layer: `kiosk`, standard library only (no Kivy, never `ils`).

Catalogues live in `kiosk/locale/<language>/LC_MESSAGES/kiosk.po`, and are
compiled to `kiosk.mo` beside them by `python -m kiosk.pocompile` (run by
`make kiosk-locale`; the compiled files are committed, and a test checks they
match their sources). Screens ask `Catalogues.gettext(language, msgid)`; a
language change only changes the language asked for, so switching is instant.
"""

from __future__ import annotations

import gettext
from datetime import date
from pathlib import Path

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "kiosk"

# The msgid whose translation is the date format of each language.
DATE_FORMAT = "%b %d, %Y"


class Catalogues:
    """Every shipped language's translations, loaded once."""

    def __init__(self, languages: list[str] | tuple[str, ...]) -> None:
        self._translations: dict[str, gettext.NullTranslations] = {}
        for language in languages:
            self._translations[language] = gettext.translation(
                DOMAIN, localedir=LOCALE_DIR, languages=[language], fallback=True
            )

    def gettext(self, language: str, message: str) -> str:
        """`message` in `language` (itself, when there is no translation)."""
        translations = self._translations.get(language)
        return message if translations is None else translations.gettext(message)

    def date(self, language: str, day: date) -> str:
        """A date as `language` writes it."""
        return day.strftime(self.gettext(language, DATE_FORMAT))
