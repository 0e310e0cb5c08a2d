"""Text from outside, made safe to show or log: :func:`printable` is the one place of the rules.

A string the program did not compose itself (a station id, a TLS certificate subject, a signer
module's name, a server's error text, a kit's reply, serial numbers read from a board, file
contents quoted in an error) may hold characters a terminal or a log reader obeys instead of
showing: ESC sequences that clear the screen or move the cursor, CR that overwrites a line, a
newline that starts a forged log line, NUL, Unicode line separators, or bidirectional overrides
that make text read in another order than it is stored. :func:`printable` turns each of them
into a visible escape; the printable characters (any script, any language) are kept as they are.

What is escaped: every character :meth:`str.isprintable` rejects, except the plain space: the
C0 and C1 controls and DEL, Unicode line/paragraph separators, format characters
(bidirectional overrides, zero-width characters), other separators, lone surrogates,
private-use and unassigned code points. Escapes: ``\\n``, ``\\r``, ``\\t``, else ``\\xNN``
(two lower-case hex digits: ``\\x1b`` for ESC, ``\\x00`` for NUL), ``\\uNNNN`` or
``\\UNNNNNNNN``. With ``escape_backslash`` a backslash becomes ``\\\\``, so that the result
reads back unambiguously: a station id holding the six characters ``\\x1b[2J`` cannot pass for
one that held an ESC. Use it for values whose exact text matters (ids, log fields); without it
(the default) text the program composed around such values, e.g. a Windows path, keeps its
single backslashes.

:func:`quoted` puts such a value between double quotes (a ``"`` inside becomes ``\\"``), so
that where it ends is unmistakable when it is shown next to text the program wrote: a station
id cannot pass for the TLS certificate subject printed beside it.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def needs_escape(ch: str) -> bool:
    """Whether the single character ``ch`` is shown as an escape by :func:`printable`."""
    return ch != " " and not ch.isprintable()


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
    """``text`` with every character a terminal or log reader would obey escaped (see above)."""
    if text.isprintable() and not (escape_backslash and "\\" in text):
        return text  # the common case: nothing to do
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
