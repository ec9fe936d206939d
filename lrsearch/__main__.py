"""``python -m lrsearch``: the same command line as the ``lrsearch`` script."""

from lrsearch.service.cli import main

main()
