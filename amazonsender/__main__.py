"""`python -m amazonsender`: runs the command line (amazonsender.cli)."""

from .cli import main

main(prog_name="python -m amazonsender")
