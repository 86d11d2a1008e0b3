"""``python -m nano8k.align``: runs nano8k.commands.align."""

import sys

from nano8k.commands.align import main

if __name__ == "__main__":
    sys.exit(main())
