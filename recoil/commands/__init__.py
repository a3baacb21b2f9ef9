"""Subcommands of ``recoil``: every public module here defines ``register(subparsers)``."""
