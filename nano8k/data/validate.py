"""``python -m nano8k.data.validate``: runs nano8k.commands.validate."""

import sys

from nano8k.commands.validate import main

if __name__ == "__main__":
    sys.exit(main())
