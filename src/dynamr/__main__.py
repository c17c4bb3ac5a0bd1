"""``python -m dynamr`` runs the CLI."""

from dynamr.cli.main import main

main()
