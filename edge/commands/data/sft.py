"""Training data for the two models: `edge data traces` (reasoner SFT) and
`edge data export-llava` (a perception style as LLaVA conversation JSON)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from runtime.atomic import atomic_write_text
from runtime.errors import InputError
from training.data.llava import write_llava
from training.data.styles import hint_messages, llava_conversation, trace_messages
from training.data.synth import SynthDataset


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("traces", help="write reasoner SFT data: thinking traces and focus phrases",
                       description="Chat-message JSONL for a text reasoner: the stage-2 prompt (a description, "
                       "the question with options) -> '<think>' steps working from the description '</think>' "
                       "then 'Answer: X'; with --hints also question -> focus phrase examples.")
    p.add_argument("dataset", type=Path, help="synthetic dataset folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--description", choices=("extraction", "caption"), default="extraction",
                   help="which description the reasoner reads (extraction: Extract+Think; caption: Caption+Think)")
    p.add_argument("--no-thinking-share", type=float, default=0.0,
                   help="share of examples in non-thinking form (empty think block, direct answer)")
    p.add_argument("--hints", action="store_true", help="also write focus-phrase (hint stage) examples")
    p.set_defaults(func=_traces)

    p = sub.add_parser("export-llava", help="write a perception training style as LLaVA conversation JSON",
                       description="direct: question -> answer (visual instruction tuning); caption: describe -> "
                       "caption; extraction: extraction instruction + focus -> question-relevant description.")
    p.add_argument("dataset", type=Path, help="synthetic dataset folder")
    p.add_argument("--style", choices=("direct", "caption", "extraction"), required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, type=Path, help="output JSON (image paths relative to its folder)")
    p.set_defaults(func=_export_llava)



def _traces(args: argparse.Namespace) -> int:
    if not 0.0 <= args.no_thinking_share <= 1.0:
        raise InputError("--no-thinking-share must be in [0, 1]")
    ds = SynthDataset(args.dataset)
    lines = []
    for rec in ds.records(args.split):
        frac = int.from_bytes(hashlib.sha256(f"{rec['id']}:nothink".encode()).digest()[:8], "big") / 2**64
        lines.append(json.dumps(trace_messages(rec, description=args.description,
                                               thinking=frac >= args.no_thinking_share), ensure_ascii=False))
        if args.hints:
            lines.append(json.dumps(hint_messages(rec), ensure_ascii=False))
    atomic_write_text(args.out, "\n".join(lines) + ("\n" if lines else ""))
    print(f"{args.out}: {len(lines)} examples")
    return 0


def _export_llava(args: argparse.Namespace) -> int:
    ds = SynthDataset(args.dataset)
    seen: set[str] = set()
    rows = []
    for rec in ds.records(args.split):
        if args.style == "caption":  # one caption per image
            if rec["scene_id"] in seen:
                continue
            seen.add(rec["scene_id"])
        row = llava_conversation(rec, args.style)
        # image paths relative to the output file, so the JSON works where it is written
        row["image"] = os.path.relpath(ds.image_path(rec).resolve(), args.out.resolve().parent)
        rows.append(row)
    write_llava(args.out, rows)
    print(f"{args.out}: {len(rows)} examples")
    return 0
