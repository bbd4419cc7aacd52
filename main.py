"""Doppel's entry point: `python main.py` serves the API (see `python main.py --help`).

`uvicorn main:app` also works: importing this module as `main` builds the app from the
environment.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
else:
    from app.factory import create_app

    app = create_app()
