"""`python -m kagglekit` is the `kagglekit` command."""

from kagglekit.cli import app

app()
