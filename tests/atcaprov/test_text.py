"""atcaprov.text.printable: what is escaped, how, and that the escaped text reads back exactly."""

from __future__ import annotations

import random
import re
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atcaprov.text import needs_escape, printable, quoted

_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|([nrt\\]))")
_NAMED = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _read_back(escaped: str) -> str:
    """Undo printable(..., escape_backslash=True): the test of its unambiguity."""

    def one(m: re.Match[str]) -> str:
        if m.group(4):
            return _NAMED[m.group(4)]
        return chr(int(m.group(1) or m.group(2) or m.group(3), 16))

    return _ESCAPE.sub(one, escaped)


def test_controls_become_visible_escapes() -> None:
    assert printable("a\nb") == "a\\nb"
    assert printable("\r\t") == "\\r\\t"
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("\x00") == "\\x00"
    assert printable("\x7f") == "\\x7f"  # DEL
    assert printable("\x9b2J") == "\\x9b2J"  # C1 CSI: a one-character escape sequence
    assert printable("\x85") == "\\x85"  # NEL, a C1 line break
    assert printable("a\u2028b\u2029c") == "a\\u2028b\\u2029c"
    assert printable("\u202egnp.exe") == "\\u202egnp.exe"  # right-to-left override
    assert printable("x\u2066y\u2069") == "x\\u2066y\\u2069"  # bidi isolates
    assert printable("\u200b\ufeff") == "\\u200b\\ufeff"  # zero-width space, BOM
    assert printable("\udcff") == "\\udcff"  # a lone surrogate (surrogateescape)


def test_printable_text_is_kept() -> None:
    kept = ("", "line-1", "Größe 5 µm", "日本語の局", "a b  c", "C:\\ProgramData", "\"q\" 's'")
    for text in kept:
        assert printable(text) == text
    # a space that is not the plain space (NBSP) is escaped: it can pass for one
    assert printable("\u00a0nbsp") == "\\xa0nbsp"


def test_backslash_escaped_on_request_only() -> None:
    assert printable("C:\\data") == "C:\\data"
    assert printable("C:\\data", escape_backslash=True) == "C:\\\\data"
    # the six characters \x1b[2J and a real ESC are told apart only with escape_backslash
    literal, real = "\\x1b[2J", "\x1b[2J"
    assert printable(literal, escape_backslash=True) != printable(real, escape_backslash=True)


def test_every_bmp_character_is_safe_and_reads_back() -> None:
    for code in range(0x10000):
        ch = chr(code)
        out = printable(ch, escape_backslash=True)
        assert not any(needs_escape(c) for c in out), hex(code)
        assert _read_back(out) == ch, hex(code)
        assert (out == ch) == (not needs_escape(ch) and ch != "\\"), hex(code)


def test_random_strings_read_back() -> None:
    rng = random.Random(8971)
    alphabet = ["a", " ", "\\", "x", "1", "b", "\n", "\x1b", "\x00", "\u2028", "\u202e", "é"]
    alphabet += ["[", "2", "J", "u", "\x9b", "\t", "\r", chr(sys.maxunicode)]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        out = printable(text, escape_backslash=True)
        assert _read_back(out) == text, repr(text)
        assert "\n" not in out and "\x1b" not in out and "\x00" not in out


def test_quoted_value_ends_where_it_seems_to() -> None:
    assert quoted("line-1") == '"line-1"'
    assert quoted('a" (TLS: commonName=admin)') == '"a\\" (TLS: commonName=admin)"'
    assert quoted("a\\") == '"a\\\\"'  # a trailing backslash cannot escape the closing quote
    assert quoted("x\ny") == '"x\\ny"'
    # between the quotes no unescaped quote is left: the value ends at the last one
    for text in ('"', '\\"', 'a\\\\"b', '\n"\x1b'):
        inner = quoted(text)[1:-1]
        assert re.fullmatch(r'(?:[^"\\]|\\.)*', inner), inner


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Signer 47DC is locked", "Signer 47DC is locked"),
        ("\x1b[2J\nProvisioning successful!", "\\x1b[2J\\nProvisioning successful!"),
        ("a\rb\tc\x00d\x7fe", "a\\rb\\tc\\x00d\\x7fe"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("ok\u2028fake line", "ok\\u2028fake line"),
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("Größe 温度 ✓", "Größe 温度 ✓"),  # printable text of any language is kept
        ("C:\\certs\\x.c", "C:\\certs\\x.c"),
    ],
)
def test_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_backslash_escaped_on_request() -> None:
    assert printable("a\\nb\nc", escape_backslash=True) == "a\\\\nb\\nc"


@given(st.text())
def test_nothing_a_terminal_obeys_is_left(text: str) -> None:
    shown = printable(text)
    assert all(ch == " " or ch.isprintable() for ch in shown)


@given(st.text())
def test_with_backslashes_escaped_the_mapping_is_one_to_one(text: str) -> None:
    shown = printable(text, escape_backslash=True)
    decoded = shown.encode("ascii", "backslashreplace").decode("unicode_escape")
    assert decoded == text
