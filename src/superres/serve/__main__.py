"""``python -m superres.serve [OPTIONS]``: the server without the rest of the command line (what process
managers and the tests start; same options as ``superres serve``)."""

from __future__ import annotations

import sys

import typer

from ..errors import SuperresError
from .command import serve_command


def main() -> None:
    try:
        typer.run(serve_command)
    except SuperresError as e:  # typer.run lets it through when standalone_mode catches only its own
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
