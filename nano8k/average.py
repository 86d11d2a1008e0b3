"""``python -m nano8k.average``: runs nano8k.commands.average."""

import sys

from nano8k.commands.average import main

if __name__ == "__main__":
    sys.exit(main())
