"""``python -m skinflint``: the same as the ``skinflint`` command."""

from skinflint.cli import app

app(prog_name="skinflint")
