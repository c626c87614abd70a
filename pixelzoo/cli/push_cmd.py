"""``pixelzoo push DIR --repo-id ORG/NAME``: publish a saved model folder to the Hub in one commit."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="publish a model folder (config.json, model.safetensors, README.md) to the Hub")
    p.add_argument("folder", metavar="DIR", help="a folder written by model.save_pretrained (or a hub/ folder)")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the Hub model repo (created if needed)")
    p.add_argument("--revision", default=None, help="branch to commit to (created if needed; default main)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--overwrite-card", action="store_true",
                   help="replace a README.md already on the Hub (by default it is kept)")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_folder

    commit = push_folder(args.folder, args.repo_id, revision=args.revision, private=args.private or None,
                         token=args.token, commit_message=args.message, overwrite_card=args.overwrite_card)
    print(f"pushed {args.folder} to {args.repo_id}: {commit}")
    return 0
