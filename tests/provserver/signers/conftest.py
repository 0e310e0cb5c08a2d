"""Fixtures of the signer back-end tests."""

from __future__ import annotations

import pytest

from tests.support.certs import TestRoot, make_root


@pytest.fixture(scope="module")
def root() -> TestRoot:
    """A test root CA that issues the signer certificates."""
    return make_root()
