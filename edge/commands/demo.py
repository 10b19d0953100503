"""`edge demo`: `edge serve` plus a web page at / to try Extract+Think with an image.

    edge demo                                  the shipped bundle on http://127.0.0.1:8080/
    edge demo --bundle B --host 0.0.0.0 --port 8000 --allowed-host pi.local

The page streams from the same /v1/chat/completions endpoint every other client uses
(see docs/serve.md), so there is one server and one set of checks.
"""

from __future__ import annotations

import argparse

from edge.commands.serve import add_server_arguments, run_server


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        description="Serve a web page where a person picks, drops or takes a photo, asks a "
        "question and watches the focus hint, the extraction, the thinking and the answer stream "
        "in, with per-stage timings and memory, and budget controls (thinking on/off, thinking "
        "and extraction budgets, deadline). It is `edge serve` (the OpenAI-compatible API, same "
        "options) with the page at /. One model instance serves every visitor; requests take "
        "turns. Listens on 127.0.0.1 unless --host says otherwise.",
    )
    add_server_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run_server(args, demo=True)
