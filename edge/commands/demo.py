"""`edge demo`: a local web page to try Extract+Think with an image and a question.

    edge demo                                  the shipped bundle on http://127.0.0.1:8080/
    edge demo --bundle B --host 0.0.0.0 --port 8000    reachable from the local network
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from edge.arguments import add_gpu_layers, add_verify, check_gpu_layers
from edge.demo.server import DemoApp, Example, make_server
from edge.plan import RunPlan, load_pipeline, make_plan, resolve_profile
from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from runtime.errors import InputError
from runtime.pipeline import ExtractThink


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        description="Serve a web page where a person picks, drops or takes a photo, asks a "
        "question and watches the focus hint, the extraction, the thinking and the answer stream "
        "in, with per-stage timings and memory, and budget controls (thinking on/off, thinking "
        "and extraction budgets, deadline). One model instance serves every visitor; requests "
        "take turns. Listens on 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--bundle", type=Path, help="bundle directory (default: the shipped one)")
    p.add_argument("--profile", help="device profile name or file (default: the bundle's "
                   "profile.json, else the detected device)")
    p.add_argument("--backend", choices=("llamacpp", "onnx"), help="force a backend")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                   "0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    add_gpu_layers(p)
    add_verify(p)
    p.set_defaults(func=main)


def demo_info(bundle_name: str, plan: RunPlan, pipeline: ExtractThink | None) -> dict:
    return {
        "bundle": bundle_name,
        "profile": plan.profile.name,
        "profile_title": plan.profile.title,
        "selection": plan.selection.to_dict(),
        "threads": plan.threads,
        "residency": pipeline.residency if pipeline is not None else plan.residency,
        "backends": pipeline.backends() if pipeline is not None else {},
    }


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    check_gpu_layers(args.gpu_layers)
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a port number (0-65535)")
    bundle = args.bundle if args.bundle is not None else default_bundle_path()
    manifest = read_manifest(bundle)
    plan = make_plan(bundle, resolve_profile(args.profile, bundle), backend=args.backend)
    if args.gpu_layers is not None:
        plan = dataclasses.replace(plan, gpu_layers=args.gpu_layers)
    app = DemoApp(None, info={}, max_upload_bytes=plan.profile.image.max_upload_bytes,
                  max_pixels=plan.profile.image.max_pixels, budgets=plan.budgets,
                  thinking=plan.thinking, deadline_s=plan.deadline_s,
                  example=Example.from_bundle(Path(bundle), manifest))
    server = make_server(app, args.host, args.port)  # a port in use fails before the slow load
    try:
        print(f"edge demo: loading {manifest.name} ({plan.selection.describe()}, profile "
              f"{plan.profile.name}, {plan.threads} threads)…", file=sys.stderr, flush=True)
        pipeline = load_pipeline(bundle, plan, verify=args.verify)
        app.pipeline = pipeline
        app.info = demo_info(manifest.name, plan, pipeline)
        host, port = server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        # systemd stops services with SIGTERM: leave serve_forever the same way as Ctrl-C
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            print(f"edge demo: serving on http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            print("edge demo: stopped", file=sys.stderr)
        finally:
            pipeline.close()
    finally:
        server.server_close()
    return 0
