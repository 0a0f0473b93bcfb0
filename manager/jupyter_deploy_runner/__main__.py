"""``python -m jupyter_deploy_runner --bundle DIR [--host H] [--port P]``."""

from __future__ import annotations

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
