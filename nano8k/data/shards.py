"""``python -m nano8k.data.shards``: runs nano8k.commands.shards."""

import sys

from nano8k.commands.shards import main

if __name__ == "__main__":
    sys.exit(main())
