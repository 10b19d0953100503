"""`edge unpack`: install an `edge pack` archive as a bundle directory, verifying every file.

    edge unpack pi5.tar.gz --to ~/edge-bundle
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.progress import ProgressDisplay
from edge.unpack import unpack_archive
from runtime.bundle import read_manifest


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unpack",
        description="Unpack an archive made by `edge pack`. Only regular files listed in its "
        "manifest are accepted (no links, no paths outside the folder); every file's size and "
        "sha256 are checked while it is written; the bundle appears at --to only once complete.",
    )
    p.add_argument("archive", type=Path, help="archive made by `edge pack`")
    p.add_argument("--to", type=Path, required=True, help="bundle directory to create")
    p.add_argument("--force", action="store_true",
                   help="replace a bundle (a folder with manifest.json) at --to; other folders are never replaced")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    with ProgressDisplay("unpack", enabled=not args.quiet and not args.json) as progress:
        out = unpack_archive(args.archive, args.to, overwrite=args.force, progress=progress)
    m = read_manifest(out)
    if args.json:
        print(json.dumps({"bundle": str(out), "name": m.name,
                          "files": {k: v.size for k, v in m.files.items()}}))
    else:
        print(f"unpacked {m.name} ({len(m.files)} files, all sha256 verified) into {out}")
        print(f"run it: edge run --bundle {out} --image IMAGE --question TEXT")
    return 0
