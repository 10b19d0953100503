"""`edge data`: the synthetic world, dataset loaders and the visual-extraction pipeline.

    edge data synth      write a synthetic dataset (images + JSONL with every target)
    edge data extract    run the visual-extraction pipeline (resumable, shardable)
    edge data merge      join the outputs of extraction shards, checking the indices
    edge data traces     write reasoner SFT data (thinking traces, focus phrases)
    edge data export-llava  write a perception style as LLaVA conversation JSON
    edge data stats      counts per split, category, question type; target lengths
    edge data check      load a LLaVA JSON or MMStar parquet/TSV and report bad rows
    edge data import-mmstar  convert MMStar-style parquet/TSV into an eval JSONL set

One module per kind of work: `synth`, `extract` (with `merge`), `sft` (traces and
export-llava) and `inspect` (stats, check, import-mmstar).
"""

from __future__ import annotations

import argparse

from edge.commands.data import extract, inspect, sft, synth


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    synth.add_parsers(sub)
    extract.add_parsers(sub)
    sft.add_parsers(sub)
    inspect.add_parsers(sub)
