"""Message catalogues: the words harness teaches with, in English (the message ids) and in each
language a translator has written a catalogue for. Pure code (it reads its catalogue files).

A catalogue is gettext's .po file, harness/render/locale/<lang>/LC_MESSAGES/harness.po, so any
.po editor works on it and no Python needs reading; it is read directly (no .mo to compile).
Messages are Python format strings with named fields (`{frame}`), which a translation may reorder.
A message missing from a catalogue falls back to English.
"""
from __future__ import annotations

import ast
import gettext
import os
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["LANGUAGES", "catalogue", "default_language"]

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "harness"


def _languages() -> List[str]:
    return ["en"] + sorted(path.name for path in LOCALE_DIR.iterdir()
                           if (path / "LC_MESSAGES" / f"{DOMAIN}.po").is_file())


LANGUAGES = _languages()


class _PoTranslations(gettext.NullTranslations):
    def __init__(self, messages: Dict[str, str]) -> None:
        super().__init__()
        self._messages = messages

    def gettext(self, message: str) -> str:
        return self._messages.get(message) or message


def read_po(text: str) -> Dict[str, str]:
    """msgid -> msgstr of a .po file's entries (fuzzy and empty translations left out)."""
    messages: Dict[str, str] = {}
    entry: Dict[str, str] = {}
    key: Optional[str] = None
    fuzzy = False

    def flush() -> None:
        if entry.get("msgid") and entry.get("msgstr") and not fuzzy:
            messages[entry["msgid"]] = entry["msgstr"]

    for line in text.splitlines() + [""]:
        line = line.strip()
        if not line:
            flush()
            entry, key, fuzzy = {}, None, False
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#"):
            continue
        elif line.startswith(("msgid ", "msgstr ")):
            key, _, literal = line.partition(" ")
            entry[key] = ast.literal_eval(literal)
        elif line.startswith('"') and key is not None:
            entry[key] += ast.literal_eval(line)
    return messages


_loaded: Dict[str, gettext.NullTranslations] = {}


def catalogue(language: str) -> gettext.NullTranslations:
    """The translations for `language` (one of LANGUAGES); English is the message ids themselves."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalogue for {language!r}; there are: {', '.join(LANGUAGES)}")
    if language not in _loaded:
        path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        _loaded[language] = (gettext.NullTranslations() if language == "en"
                             else _PoTranslations(read_po(path.read_text(encoding="utf-8"))))
    return _loaded[language]


def default_language(environ=os.environ) -> str:
    """The language the locale asks for (LANGUAGE, LC_ALL, LC_MESSAGES, LANG, as gettext reads
    them), if a catalogue has it; else English."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            for wanted in value.split(":"):
                code = wanted.split(".")[0].split("_")[0].lower()
                if code in LANGUAGES:
                    return code
            if value not in ("C", "POSIX"):
                return "en"
    return "en"
