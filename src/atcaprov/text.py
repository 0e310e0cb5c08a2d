"""Text from outside shown safely: :func:`printable` escapes what a terminal or a log would obey.

Anything a program did not write itself (a server's error text, a station id, kit replies, serial
numbers read from a board, file contents quoted in an error) may hold control characters: ESC
sequences that clear a screen or move the cursor, CR that overwrites a line, a newline that
starts a forged log line, NUL, bidirectional overrides that reorder what is read. Every such
string goes through :func:`printable` before it reaches a console or a log line; the printable
characters (any language) are kept as they are.

What is escaped: every character :meth:`str.isprintable` rejects, except the plain space: the
C0 and C1 controls and DEL, Unicode line/paragraph separators, format characters
(bidirectional overrides, zero-width characters), other separators, private-use and unassigned
code points. Escapes: ``\\n``, ``\\r``, ``\\t``, else ``\\xNN`` (``\\x1b`` for ESC,
``\\x00`` for NUL), ``\\uNNNN`` or ``\\UNNNNNNNN``. With ``escape_backslash`` a backslash is
written ``\\\\`` too, so that the escaped text reads back unambiguously (for logs that are
parsed).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, escape_backslash: bool = False) -> str:
    """``text`` with every character a terminal or a log could obey escaped (see the module
    docstring); printable text, of any language, is kept as it is."""
    if text.isprintable() and not (escape_backslash and "\\" in text):
        return text  # the common case: nothing to do
    out: list[str] = []
    for ch in text:
        if ch == "\\" and escape_backslash:
            out.append("\\\\")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)


__all__ = ["printable"]
