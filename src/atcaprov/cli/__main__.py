"""``python -m atcaprov.cli``: the ``atcaprov`` command without the installed script."""

from . import main

main()
