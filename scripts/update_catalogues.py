#!/usr/bin/env python3
"""Bring every message catalogue (harness/render/locale/<lang>/LC_MESSAGES/harness.po) up to the
messages the code marks with _(): new ones are added untranslated, gone ones dropped, translations
kept. Then a translator edits the .po (any .po editor) and runs nothing else.

    python scripts/update_catalogues.py            # update every catalogue
    python scripts/update_catalogues.py --new fr   # start a catalogue for French
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.render.i18n import DOMAIN, LOCALE_DIR, read_po  # noqa: E402

SOURCES = [ROOT / "harness" / "render" / "explain.py"]


def marked_messages():
    """Each _("...") of the sources, in order of first appearance, with where it is."""
    found = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.setdefault(node.args[0].value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return sorted(found.items(), key=lambda item: (item[1].split(":")[0], int(item[1].split(":")[1])))


def _po_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_catalogue(language: str, messages) -> Path:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    old = read_po(path.read_text(encoding="utf-8")) if path.exists() else {}
    lines = [f"# harness's messages in {language}. Each msgstr is a translation of the msgid above it; keep",
             "# the {named} fields (their order may change). Regenerate with scripts/update_catalogues.py.",
             'msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"', f'"Language: {language}\\n"', ""]
    for message, where in messages:
        lines += [f"#: {where}", f"msgid {_po_string(message)}", f"msgstr {_po_string(old.get(message, ''))}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", metavar="LANG", help="start a catalogue for LANG")
    args = parser.parse_args()
    messages = marked_messages()
    languages = sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES").is_dir())
    for language in sorted(set(languages) | ({args.new} if args.new else set())):
        path = write_catalogue(language, messages)
        missing = [m for m, _ in messages if not read_po(path.read_text(encoding="utf-8")).get(m)]
        print(f"{path.relative_to(ROOT)}: {len(messages)} messages, {len(missing)} untranslated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
