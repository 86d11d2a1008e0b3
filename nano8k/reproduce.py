"""``python -m nano8k.reproduce``: runs nano8k.commands.reproduce."""

import sys

from nano8k.commands.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
