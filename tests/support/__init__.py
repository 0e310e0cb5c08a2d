"""Shared test infrastructure (no tests here): the test PKI, certificate builders, certificate
servers standing in for provserver, fake signer modules, stations, chip drivers, the fault
sweep harness and fixtures' building blocks. Fixtures themselves live in ``tests/conftest.py``."""
