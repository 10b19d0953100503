"""`edge serve`: an OpenAI-compatible chat-completions server for Extract+Think.

    edge serve                                   the shipped bundle on http://127.0.0.1:8080/v1
    edge serve --bundle B --port 9000 --api-key K --max-queue 4
    edge serve --host 0.0.0.0 --allowed-host pi.local     reachable from the local network

Any OpenAI client works: `OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="x")`.
SIGTERM (systemd stop) or Ctrl-C drains running requests, then exits with code 0.
See docs/serve.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from edge.arguments import (
    add_bundle_options,
    add_gpu_layers,
    add_kv_cache,
    add_lookup,
    add_prefix_cache,
    add_verify,
    check_gpu_layers,
    prefix_cache_mb,
    prompt_cache_dir,
)
from edge.extras import require
from edge.plan import RunPlan, load_pipeline, make_plan, resolve_profile
from edge.serve import server
from edge.serve.config import ServeConfig
from edge.serve.engine import Engine
from edge.serve.metrics import Metrics
from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from runtime.errors import InputError
from runtime.lookup import check_lookup
from runtime.threads import check_threads, default_threads

API_KEY_ENV = "EDGE_API_KEY"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        description="Serve the OpenAI chat-completions API (/v1/chat/completions, streaming or not; "
        "/v1/models; /health; /metrics) with one Extract+Think pipeline. Requests queue and run "
        "one at a time, in order. Listens on 127.0.0.1 unless --host says otherwise.",
    )
    add_server_arguments(p)
    p.set_defaults(func=main)


def add_server_arguments(p: argparse.ArgumentParser, *, default_port: int = 8080) -> None:
    """The options `edge serve` and `edge demo` share."""
    add_bundle_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                   "0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=default_port,
                   help=f"port (default {default_port}; 0 picks a free one)")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"require 'Authorization: Bearer KEY' on /v1/* and /metrics (default: ${API_KEY_ENV})")
    p.add_argument("--max-queue", type=int, default=16, metavar="N",
                   help="requests that may wait behind the running one; more get 429 (default 16)")
    p.add_argument("--request-timeout", type=float, default=300.0, metavar="S",
                   help="stop a request after S seconds, queue time included (default 300)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM/Ctrl-C, let running requests finish for up to S seconds (default 30)")
    p.add_argument("--allow-remote-images", action="store_true",
                   help="also fetch http(s) image URLs (size and time limited); default: data: URLs only")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name to answer for besides this machine's (repeatable; '*' for any, "
                   "e.g. behind a reverse proxy)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the profile's)")
    add_gpu_layers(p)
    add_prefix_cache(p)
    add_kv_cache(p)
    add_lookup(p)
    add_verify(p)


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a port number (0-65535)")
    if args.max_queue < 0:
        raise InputError(f"--max-queue must be 0 or more, got {args.max_queue}")
    for flag, value in (("--request-timeout", args.request_timeout), ("--drain-timeout", args.drain_timeout)):
        if not value >= 0 or value == float("inf"):
            raise InputError(f"{flag} must be a number of seconds >= 0, got {value}")
    if args.api_key is not None and not args.api_key.strip():
        raise InputError("--api-key is empty")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, got {args.threads}")
        check_threads(args.threads)
    check_gpu_layers(args.gpu_layers)
    prefix_cache_mb(args.prefix_cache_mb)
    prompt_cache_dir(args.prompt_cache)
    check_lookup(args.lookup)


def main(args: argparse.Namespace) -> int:
    return run_server(args, demo=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM while loading: stop like Ctrl-C (one line, no traceback)


def _serve_config(args: argparse.Namespace, plan: RunPlan, model_id: str, port: int, demo: bool) -> ServeConfig:
    return ServeConfig(
        model_id=model_id, host=args.host, port=port, api_key=args.api_key, max_queue=args.max_queue,
        request_timeout_s=args.request_timeout, drain_timeout_s=args.drain_timeout,
        max_image_bytes=plan.profile.image.max_upload_bytes, max_pixels=plan.profile.image.max_pixels,
        allow_remote_images=args.allow_remote_images, allowed_hosts=tuple(args.allowed_host), demo=demo,
        budgets=plan.budgets, thinking=plan.thinking, deadline_s=plan.deadline_s,
        info={"profile": plan.profile.name, "profile_title": plan.profile.title, "threads": plan.threads,
              "gpu_layers": plan.gpu_layers, "selection": plan.selection.to_dict()},
    )


def _plan(args: argparse.Namespace, bundle: Path) -> RunPlan:
    plan = make_plan(bundle, resolve_profile(args.profile, bundle), backend=args.backend)
    # a profile without a thread count gets the runtime's load-aware default (physical cores
    # less those other processes keep busy: docs/runtime.md "Threads"), not every core
    if args.threads:
        threads = args.threads
    elif plan.profile.threads:
        threads = plan.threads
    else:
        threads = min(plan.threads, default_threads())
    return dataclasses.replace(plan, threads=threads,
                               gpu_layers=plan.gpu_layers if args.gpu_layers is None else args.gpu_layers)


def run_server(args: argparse.Namespace, *, demo: bool) -> int:
    """Load the pipeline, serve until SIGTERM/SIGINT, shut down in order (see edge.serve.server)."""
    require("serve", f"edge {'demo' if demo else 'serve'}")
    _check(args)
    # FastAPI is the `serve` extra's: imported once require() has said it is there
    from edge.demo.page import Example
    from edge.serve.app import create_app
    from edge.serve.routes import ServeState

    name = "demo" if demo else "serve"
    bundle = args.bundle if args.bundle is not None else default_bundle_path()
    manifest = read_manifest(bundle)
    plan = _plan(args, bundle)
    sock = server.bind(args.host, args.port)  # a port in use fails before the slow load
    try:
        print(f"edge {name}: loading {manifest.name} ({plan.selection.describe()}, profile "
              f"{plan.profile.name}, {plan.threads} threads)…", file=sys.stderr, flush=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            pipeline = load_pipeline(bundle, plan, verify=args.verify,
                                     prefix_cache_mb=prefix_cache_mb(args.prefix_cache_mb), lookup=args.lookup,
                                     prompt_cache=prompt_cache_dir(args.prompt_cache), kv_cache_type=args.kv_cache)
        finally:
            signal.signal(signal.SIGTERM, previous)
        # from here on a signal only starts the shutdown: the cleanup below must not be cut
        with server.quiet_signals():
            cfg = _serve_config(args, plan, manifest.name, server.bound_port(sock), demo)
            metrics = Metrics(cfg.max_queue)
            engine = Engine(max_queue=cfg.max_queue, metrics=metrics)
            state = ServeState(config=cfg, pipeline=pipeline, engine=engine, metrics=metrics)
            try:
                app = create_app(state, demo_example=Example.from_bundle(pipeline.bundle) if demo else None)
                engine.start()
                shown = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
                where = f"http://{shown}:{cfg.port}/" if demo else f"http://{shown}:{cfg.port}/v1"
                print(f"edge {name}: serving {cfg.model_id} on {where}  (Ctrl-C to stop)", flush=True)
                server.run(app, sock, drain_timeout_s=cfg.drain_timeout_s, header_timeout_s=cfg.header_timeout_s,
                           max_connections=cfg.max_connections, access_log=args.verbose >= 1)
                state.stopping = True
            finally:
                engine.stop()  # cancels what is left and joins the worker: nothing runs any more
                pipeline.close()
    finally:
        sock.close()
    print(f"edge {name}: stopped", file=sys.stderr)
    return 0
