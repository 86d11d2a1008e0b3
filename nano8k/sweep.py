"""``python -m nano8k.sweep``: runs nano8k.commands.sweep."""

import sys

from nano8k.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
