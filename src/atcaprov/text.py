"""Text from outside shown safely: :func:`printable` escapes what a terminal or a log would obey.

Anything a program did not write itself (a server's error text, a station id, kit replies, serial
numbers read from a board, file contents quoted in an error) may hold control characters: ESC
sequences that clear a screen or move the cursor, CR that overwrites a line, a newline that
starts a forged log line, NUL, bidirectional overrides that reorder what is read. Every such
string goes through :func:`printable` before it reaches a console or a log line; the printable
characters (any language) are kept as they are.

Escapes: ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` for the other C0/C1 controls and DEL (``\\x1b``
for ESC, ``\\x00`` for NUL), ``\\uNNNN`` for Unicode line/paragraph separators and the
bidirectional/zero-width format characters. With ``escape_backslash`` a backslash is written
``\\\\`` too, so that the escaped text reads back unambiguously (for logs that are parsed).
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Format characters that change how the surrounding text is displayed (bidi embeddings,
# overrides and isolates, marks, zero-width joiners/spaces, BOM).
_FORMAT_SPOOFING = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def _needs_escape(ch: str) -> bool:
    if ch in _FORMAT_SPOOFING:
        return True
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def printable(text: str, *, escape_backslash: bool = False) -> str:
    """``text`` with every control character escaped (see the module docstring)."""
    if text.isprintable() and not (escape_backslash and "\\" in text):
        return text  # the common case: nothing to do
    out: list[str] = []
    for ch in text:
        if ch == "\\" and escape_backslash:
            out.append("\\\\")
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif _needs_escape(ch):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


__all__ = ["printable"]
