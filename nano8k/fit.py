"""``python -m nano8k.fit``: runs nano8k.commands.fit."""

import sys

from nano8k.commands.fit import main

if __name__ == "__main__":
    sys.exit(main())
