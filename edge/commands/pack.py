"""`edge pack`: a bundle -> one archive holding only what a device profile runs.

    edge pack BUNDLE --profile raspberry-pi-5-4gb --out pi5.tar.gz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.pack import pack_bundle
from edge.progress import ProgressDisplay


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        description="Write a tar archive (gzip when --out ends in .tar.gz/.tgz or with --gzip) "
        "of BUNDLE holding only the files the profile runs: one format, each model's preferred "
        "quantization present in the bundle, the tokenizer(s) and example images, plus a "
        "rewritten manifest listing them with sizes and sha256, the profile as profile.json and "
        "a README with the install and run commands for the device. Install it there with "
        "`edge unpack FILE --to DIR`.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory")
    p.add_argument("--profile", required=True, help="device profile name (see `edge doctor`) or a profile file")
    p.add_argument("--out", type=Path, required=True, help="archive to write (.tar, .tar.gz, .tgz)")
    p.add_argument("--backend", choices=("llamacpp", "onnx"), help="force one backend of the profile")
    p.add_argument("--gzip", action="store_true", default=None, help="gzip the archive whatever its name")
    p.add_argument("--force", action="store_true", help="replace an existing archive")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    with ProgressDisplay("pack", enabled=not args.quiet and not args.json) as progress:
        result = pack_bundle(args.bundle, args.profile, args.out, backend=args.backend,
                             compress=args.gzip, overwrite=args.force, progress=progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    total = sum(result.files.values())
    print(f"packed {len(result.files)} files ({total / 1e6:.1f} MB) for {args.profile}: "
          f"{result.selection.describe()}")
    print(f"wrote {result.archive} ({result.archive_bytes / 1e6:.1f} MB)")
    print(f"on the device: edge unpack {result.archive.name} --to ~/edge-bundle")
    return 0
