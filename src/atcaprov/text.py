"""Text from outside, made safe to show or log: :func:`printable` is the one place of the rules.

A string the program did not compose itself (a station id, a TLS certificate subject, a signer
module's name, a server's error text, a kit's reply) may hold characters a terminal or a log
reader obeys instead of showing: ESC sequences that clear the screen or move the cursor, CR
that overwrites a line, a newline that starts a forged log line, NUL, Unicode line separators,
or bidirectional overrides that make text read in another order than it is stored.
:func:`printable` turns each of them into a visible escape; every other character (any
script, any language) is kept as it is.

The escapes: ``\\n``, ``\\r``, ``\\t``; ``\\xNN`` (two lower-case hex digits) for the other C0
controls, DEL and the C1 controls (``\\x1b`` for ESC, ``\\x00`` for NUL); ``\\uNNNN`` for the
Unicode line and paragraph separators, the bidirectional and zero-width format characters and
lone surrogates (which cannot even be written as UTF-8). With ``escape_backslash`` a backslash
becomes ``\\\\``, so that the result reads back unambiguously: a station id holding the six
characters ``\\x1b[2J`` cannot pass for one that held an ESC. Use it for values whose exact
text matters (ids, log fields); without it (the default) text the program composed around such
values, e.g. a Windows path, keeps its single backslashes.

:func:`quoted` puts such a value between double quotes (a ``"`` inside becomes ``\\"``), so
that where it ends is unmistakable when it is shown next to text the program wrote: a station
id cannot pass for the TLS certificate subject printed beside it.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Format characters that change how the text around them is displayed: Arabic letter mark,
# zero-width space/non-joiner/joiner, LRM/RLM, the bidi embeddings and overrides (LRE RLE PDF
# LRO RLO), word joiner, the bidi isolates (LRI RLI FSI PDI) and the byte order mark.
_DISPLAY_CHANGING = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff"
)
# Cc: C0, DEL, C1; Zl/Zp: U+2028/U+2029; Cs: a lone surrogate (e.g. from surrogateescape).
_ESCAPED_CATEGORIES = frozenset(("Cc", "Zl", "Zp", "Cs"))


def needs_escape(ch: str) -> bool:
    """Whether the single character ``ch`` is shown as an escape by :func:`printable`."""
    return ch in _DISPLAY_CHANGING or unicodedata.category(ch) in _ESCAPED_CATEGORIES


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, escape_backslash: bool = False) -> str:
    """``text`` with every character a terminal or log reader would obey escaped (see above)."""
    if text.isprintable() and not (escape_backslash and "\\" in text):
        return text  # the common case; isprintable() is False for every escaped character
    out: list[str] = []
    for ch in text:
        if ch == "\\" and escape_backslash:
            out.append("\\\\")
        elif needs_escape(ch):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def quoted(text: str) -> str:
    """``"text"``: :func:`printable` with ``escape_backslash``, and ``"`` escaped as ``\\"``."""
    return '"' + printable(text, escape_backslash=True).replace('"', '\\"') + '"'


__all__ = ["needs_escape", "printable", "quoted"]
