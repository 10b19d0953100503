"""What `edge serve` adds to a request, measured against the Python API on the same requests.

    python -m benchmarks.serve_overhead --bundle B --requests 12 --threads 1
    edge bench serve --requests 12                 # the same, from the `edge` command

One child process holds an `ExtractThink` (the Python API) and times its own calls; a second
child runs `edge serve` on a free loopback port with the same bundle, backend and threads
(both are children of the benchmark, so on a busy machine the scheduler treats them alike). Each measured request
(its own synthetic image, so no cache answers it; greedy decoding, so both sides generate
the same tokens) is sent three ways, interleaved and in alternating order so slow phases of a
busy machine hit all of them alike (http and sse each get their own new image, and the API
answers both images):
- api: `ExtractThink.stream(...)` consumed to the end (image bytes in, as the server gets them);
- http: POST /v1/chat/completions, the whole JSON answer (client-side base64 included);
- sse: the same with `stream: true`, read to `data: [DONE]`.
The report gives medians and spreads of each, the ratios http/api and sse/api (of medians and
the median of per-request ratios), the added milliseconds, whether the answers agreed, and the
machine's load average before and after.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

from benchmarks.inputs import OPTIONS, QUESTIONS, bench_image
from benchmarks.machine import describe, load_average, machine_info
from benchmarks.stats import ratio, summarize
from runtime.defaults import default_bundle_path
from runtime.errors import EdgeError
from runtime.pipeline import ExtractThink
from runtime.result import Done

WAYS = ("api", "http", "sse")


@dataclass(frozen=True)
class ServeBenchConfig:
    bundle: str
    requests: int = 12
    warmup: int = 2
    threads: int = 1
    backend: str = "llamacpp"
    image_size: int = 384
    thinking_budget: int | None = None  # None: the bundle's


def _photo(seed: int, size: int) -> bytes:
    """A JPEG about the size of a camera photo scaled to `size` (sensor-like noise on the
    benchmark picture: 384 px is ~40-50 KB), so the image's trip through base64 and JSON
    costs what it would for a real one."""
    rng = np.random.default_rng(seed)
    pixels = bench_image(size, seed).astype(np.int16) + rng.integers(-12, 13, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class ApiProcess:
    """The Python API in a child process: one JSON line in (image, question, options,
    arguments), one out (the seconds `ExtractThink.stream` took to its end, the answer)."""

    def __init__(self, cfg: ServeBenchConfig, workdir: Path) -> None:
        self.err = (workdir / "api.err").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serve_overhead", "--worker", "--bundle", cfg.bundle,
             "--threads", str(cfg.threads), "--backend", cfg.backend],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise EdgeError(f"the API worker did not start: see {workdir / 'api.err'}")

    def ask(self, png: bytes, question: str, kw: dict[str, Any]) -> tuple[float, float, str | None]:
        self.proc.stdin.write(json.dumps({"image": base64.b64encode(png).decode(), "question": question,
                                          "kw": kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise EdgeError("the API worker stopped")
        out = json.loads(line)
        return out["seconds"], out["cpu"], out["answer"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(120)
        self.err.close()


def worker(cfg: ServeBenchConfig) -> None:
    """The child side of `ApiProcess`."""
    with ExtractThink.load(cfg.bundle, backend=cfg.backend, threads=cfg.threads) as et:
        print("ready", flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            png = base64.b64decode(req["image"])
            started, cpu = time.perf_counter(), time.process_time()
            answer = None
            for ev in et.stream(png, req["question"], list(OPTIONS), sampling="greedy", **req["kw"]):
                if isinstance(ev, Done):
                    answer = ev.result.answer
            print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                              "answer": answer}), flush=True)


class ServerProcess:
    """`edge serve` in a subprocess on a free loopback port."""

    def __init__(self, cfg: ServeBenchConfig, workdir: Path) -> None:
        self.err = (workdir / "serve.err").open("w")
        self.out = workdir / "serve.out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--bundle", cfg.bundle, "--port", "0", "--threads",
             str(cfg.threads), "--backend", cfg.backend, "--profile", "laptop", "--max-queue", "2"],
            stdout=self.out.open("w"), stderr=self.err)
        started = time.monotonic()
        while True:
            m = re.search(r"on http://127\.0\.0\.1:(\d+)/", self.out.read_text())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() - started > 300:
                self.stop()
                raise EdgeError(f"edge serve did not start: see {workdir / 'serve.err'}")
            time.sleep(0.1)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        """CPU seconds the server process has used (every thread)."""
        t = self.ps.cpu_times()
        return t.user + t.system

    def post(self, body: dict[str, Any]) -> bytes:
        self.conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()  # the whole answer, or the whole stream up to [DONE]
        if resp.status != 200:
            raise EdgeError(f"edge serve answered {resp.status}: {data[:300]!r}")
        return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(120)
        self.err.close()


def _answer_of_stream(raw: bytes) -> str | None:
    for block in raw.decode().split("\n\n"):
        data = block.rpartition("data: ")[2]
        if '"finish_reason": "' in data:
            return json.loads(data)["extract_think"]["answer"]
    return None


def _one(way: str, api: ApiProcess, server: ServerProcess, png: bytes, question: str,
         kw: dict[str, Any]) -> tuple[float, float, str | None]:
    """(wall seconds, CPU seconds, answer). The server's CPU is its process's plus the
    client's here (encoding the image, reading the answer)."""
    if way == "api":
        return api.ask(png, question, kw)
    started, cpu, server_cpu = time.perf_counter(), time.process_time(), server.cpu()
    url = "data:image/jpeg;base64," + base64.b64encode(png).decode()
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": question},
                                                      {"type": "image_url", "image_url": {"url": url}}]}],
            "options": list(OPTIONS), "temperature": 0, "stream": way == "sse", **kw}
    raw = server.post(body)
    answer = _answer_of_stream(raw) if way == "sse" else json.loads(raw)["extract_think"]["answer"]
    took = time.perf_counter() - started
    return took, time.process_time() - cpu + server.cpu() - server_cpu, answer


def run_serve_overhead(cfg: ServeBenchConfig, say=lambda msg: None) -> dict[str, Any]:
    """Interleaved api / http / sse measurements; see the module docstring."""
    kw = {} if cfg.thinking_budget is None else {"thinking_budget": cfg.thinking_budget}
    load_before = load_average()
    started = time.monotonic()
    say("loading the pipeline and starting edge serve")
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        api = ApiProcess(cfg, Path(tmp))
        server = ServerProcess(cfg, Path(tmp))
        try:
            rows = []
            for i in range(cfg.warmup + cfg.requests):
                # two images: http and sse each get one never seen before, and so does the API
                # (a second request about the same image would be served from the caches)
                a, b = _photo(1000 + 2 * i, cfg.image_size), _photo(1001 + 2 * i, cfg.image_size)
                question = QUESTIONS[i % len(QUESTIONS)]
                runs = [("api", a), ("http", a), ("sse", b), ("api_b", b)]
                row: dict[str, Any] = {"image_bytes": len(a)}
                for way, png in (runs if i % 2 == 0 else [runs[1], runs[0], runs[3], runs[2]]):
                    row[way], row[f"{way}_cpu"], row[f"{way}_answer"] = _one(way.removesuffix("_b"), api, server,
                                                                            png, question, kw)
                if i >= cfg.warmup:
                    rows.append(row)
                    say(f"request {len(rows)}/{cfg.requests}: " + ", ".join(f"{w} {row[w]:.3f} s" for w in WAYS))
        finally:
            server.stop()
            api.stop()
    base = {"http": "api", "sse": "api_b"}  # the API run on the same image
    medians = {"api": summarize([r["api"] for r in rows] + [r["api_b"] for r in rows]),
               "http": summarize(r["http"] for r in rows), "sse": summarize(r["sse"] for r in rows)}
    cpu = {"api": summarize([r["api_cpu"] for r in rows] + [r["api_b_cpu"] for r in rows]),
           "http": summarize(r["http_cpu"] for r in rows), "sse": summarize(r["sse_cpu"] for r in rows)}
    return {
        "config": asdict(cfg),
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": load_average()},
        "seconds": {w: medians[w] for w in WAYS},
        "ratio": {w: ratio(medians[w]["median"], medians["api"]["median"]) for w in ("http", "sse")},
        "ratio_per_request": {w: summarize(r[w] / r[base[w]] for r in rows) for w in ("http", "sse")},
        "added_ms": {w: summarize(1000 * (r[w] - r[base[w]]) for r in rows) for w in ("http", "sse")},
        "cpu_seconds": cpu,
        "cpu_ratio_per_request": {w: summarize(r[f"{w}_cpu"] / r[f"{base[w]}_cpu"] for r in rows)
                                  for w in ("http", "sse")},
        "cpu_added_ms": {w: summarize(1000 * (r[f"{w}_cpu"] - r[f"{base[w]}_cpu"]) for r in rows)
                         for w in ("http", "sse")},
        "image_bytes": summarize(r["image_bytes"] for r in rows),
        "answers_agree": sum(r["api_answer"] == r["http_answer"] and r["api_b_answer"] == r["sse_answer"]
                             for r in rows),
        "requests": rows,
        "wall_s": round(time.monotonic() - started, 1),
    }


def to_markdown(report: dict[str, Any]) -> str:
    s, r = report["seconds"], report["ratio"]
    lines = [
        f"Server overhead: {report['config']['bundle']}, {report['config']['backend']}, "
        f"{report['config']['threads']} thread(s), {s['http']['n']} requests each way, JPEG images of "
        f"{report['config']['image_size']} px (median {report['image_bytes']['median'] / 1024:.0f} KB)",
        f"Machine: {describe(report['machine'])}; load average before {report['load_average']['before']}, "
        f"after {report['load_average']['after']}",
        "",
        "| way | median s | q1-q3 s | vs api (medians) | vs api (per request, median) | added ms (median) |",
        "|---|---|---|---|---|---|",
    ]
    for w in WAYS:
        vs = "1" if w == "api" else f"{r[w]:.3f}"
        per = "1" if w == "api" else f"{report['ratio_per_request'][w]['median']:.3f}"
        added = "0" if w == "api" else f"{report['added_ms'][w]['median']:.1f}"
        lines.append(f"| {w} | {s[w]['median']:.3f} | {s[w]['q1']:.3f}-{s[w]['q3']:.3f} | {vs} | {per} | {added} |")
    c = report["cpu_seconds"]
    lines += ["", "| way | CPU s (median) | CPU vs api (per request, median) | CPU added ms (median) |",
              "|---|---|---|---|"]
    for w in WAYS:
        per = "1" if w == "api" else f"{report['cpu_ratio_per_request'][w]['median']:.3f}"
        added = "0" if w == "api" else f"{report['cpu_added_ms'][w]['median']:.1f}"
        lines.append(f"| {w} | {c[w]['median']:.3f} | {per} | {added} |")
    lines.append(f"\nSame answer from the server as from the API: {report['answers_agree']} of "
                 f"{s['http']['n']} request pairs.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(default_bundle_path()))
    p.add_argument("--requests", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", choices=("llamacpp", "onnx"), default="llamacpp")
    p.add_argument("--thinking-budget", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the API child process
    args = p.parse_args(argv)
    cfg = ServeBenchConfig(bundle=args.bundle, requests=args.requests, warmup=args.warmup, threads=args.threads,
                           backend=args.backend, thinking_budget=args.thinking_budget)
    if args.worker:
        worker(cfg)
        return 0
    report = run_serve_overhead(cfg, say=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(report) if args.json else to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
