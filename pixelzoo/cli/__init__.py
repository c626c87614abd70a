"""``pixelzoo`` command line: ``pixelzoo list | sample | eval | ...``.

Every module named ``*_cmd.py`` in this package is a subcommand: it defines ``register(subparsers)``, which
adds its parser and sets ``func=run`` with ``run(args) -> int``. Known errors print one line; set
``PIXELZOO_TRACEBACK=1`` to see the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from ..version import __version__

    parser = argparse.ArgumentParser(prog="pixelzoo", description="PixelCNN++ models: list, train, evaluate, "
                                     "sample, publish.")
    parser.add_argument("--version", action="version", version=f"pixelzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        if os.environ.get("PIXELZOO_TRACEBACK"):
            raise
        print(f"pixelzoo {args.command}: error: {e}", file=sys.stderr)
        return 1
