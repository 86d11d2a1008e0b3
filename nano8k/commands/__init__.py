"""The commands: thin modules that parse arguments and call the library; none imports another.

Each ``nano8k.commands.X`` has ``main(argv) -> int``; ``nano8k X`` (``nano8k.__main__``) and ``python -m nano8k.X``
(a two-line entry module beside the packages) both run it.
"""
