"""``python -m nano8k.evaluate``: runs nano8k.commands.evaluate."""

import sys

from nano8k.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
