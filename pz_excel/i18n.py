"""Bilingual user-facing text (English / Russian).

Users are Russian-speaking sales teams and their admins; messages carry both languages and
the current one is picked from ``PZ_LANG`` or the locale, so a CLI line reads naturally.
"""

from __future__ import annotations

import locale
import os
from dataclasses import dataclass


def current_lang() -> str:
    """``ru`` or ``en``: ``PZ_LANG`` wins, then the process locale; English by default."""
    forced = os.environ.get("PZ_LANG", "").strip().lower()
    if forced in ("ru", "en"):
        return forced
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            return "ru" if value.lower().startswith("ru") else "en"
    try:
        loc = locale.getlocale()[0] or ""
    except ValueError:  # pragma: no cover - odd locales on some systems
        loc = ""
    return "ru" if loc.lower().startswith("ru") else "en"


@dataclass(frozen=True)
class Text:
    """A message in both languages; ``str()`` gives the current language."""

    en: str
    ru: str

    def format(self, **kwargs: object) -> Text:
        return Text(self.en.format(**kwargs), self.ru.format(**kwargs))

    def __str__(self) -> str:
        return self.ru if current_lang() == "ru" else self.en

    def both(self) -> str:
        """Both languages on one line, for logs an admin of either tongue reads."""
        return self.en if self.en == self.ru else f"{self.en} / {self.ru}"


class UserError(Exception):
    """An error the user can fix: printed as one clear line, exit code 2, no traceback."""

    def __init__(self, text: Text, exit_code: int = 2):
        super().__init__(text.en)
        self.text = text
        self.exit_code = exit_code

    def __reduce__(self):  # whole (both languages) when pickled, e.g. from the book process
        return type(self), (self.text, self.exit_code)

    def __str__(self) -> str:
        return str(self.text)


def excerpt(text: str, limit: int = 40) -> str:
    """Outside text as a message quotes it: stripped, at most ``limit`` characters (a
    pasted paragraph must not flood a one-line error)."""
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tr(en: str, ru: str) -> str:
    """The current language's text, for strings fixed at import time (click's help): the
    language of a process is set before it starts (``PZ_LANG`` or the locale)."""
    return ru if current_lang() == "ru" else en
