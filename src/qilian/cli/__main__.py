"""``python -m qilian.cli``: the ``qilian`` command."""

from qilian.cli.main import main

main()
