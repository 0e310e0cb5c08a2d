"""The test suite. Its folders are packages (``tests.atcaprov...``), so test file names need not
be unique; shared helpers live in :mod:`tests.support`, shared fixtures in ``conftest.py``."""
