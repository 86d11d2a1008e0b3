"""``python -m nano8k.simulate``: runs nano8k.commands.simulate."""

import sys

from nano8k.commands.simulate import main

if __name__ == "__main__":
    sys.exit(main())
