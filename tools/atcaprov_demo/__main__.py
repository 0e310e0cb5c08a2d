"""``python -m atcaprov_demo``: what ``make demo`` runs."""

from . import main

main()
