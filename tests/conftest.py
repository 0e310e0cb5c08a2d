"""Fixtures shared across the test folders (their building blocks live in tests/support)."""

from __future__ import annotations

import pytest

from tests.support.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    """The test PKI: root CA, signer, standard cert defs and the cert info (new keys)."""
    return make_pki()
