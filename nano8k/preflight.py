"""``python -m nano8k.preflight``: runs nano8k.commands.preflight."""

import sys

from nano8k.commands.preflight import main

if __name__ == "__main__":
    sys.exit(main())
