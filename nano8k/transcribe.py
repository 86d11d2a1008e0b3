"""``python -m nano8k.transcribe``: runs nano8k.commands.transcribe."""

import sys

from nano8k.commands.transcribe import main

if __name__ == "__main__":
    sys.exit(main())
