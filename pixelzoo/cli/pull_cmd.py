"""``pixelzoo pull ORG/NAME --to DIR``: download a model repo into a folder, after checking that it loads."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="download a Hub model repo into a folder")
    p.add_argument("repo_id", metavar="ORG/NAME", help="the Hub model repo")
    p.add_argument("--to", required=True, metavar="DIR", help="destination folder (new or empty)")
    p.add_argument("--revision", default=None, help="branch, tag or commit id (default main)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder, replacing its files")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import pull

    folder = pull(args.repo_id, args.to, revision=args.revision, token=args.token, force=args.force)
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    print(f"pulled {args.repo_id} into {folder}: {', '.join(names)}")
    return 0
