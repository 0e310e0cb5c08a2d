"""printable(): text from outside shown without its control characters taking effect."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atcaprov.text import printable


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
