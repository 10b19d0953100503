"""Counters, gauges and histograms for `GET /metrics`, in Prometheus' text format (0.0.4).

Written by hand (a few dozen lines) rather than with `prometheus_client`, so the server
needs nothing beyond FastAPI and uvicorn. Every method is thread-safe: the worker thread
counts tokens and stage times, the HTTP side counts requests and refusals.

    edge_serve_http_requests_total{route,code}     every HTTP answer
    edge_serve_completions_total{outcome}          ok | cancelled | timeout | shutdown | error
    edge_serve_queue_depth / _running / _queue_capacity
    edge_serve_request_seconds                     admission to the end, queue included
    edge_serve_queue_wait_seconds                  admission to start
    edge_serve_stage_seconds{stage}                per stage (hint, vision, extraction, ...)
    edge_serve_tokens_total{stage}                 generated tokens, cancelled requests too
    edge_serve_budget_events_total{kind}           budget controller actions
    edge_serve_cache_hits_total{cache}             embedding / extraction / prefix / reasoner_prefix hits
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PREFIX = "edge_serve_"


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    esc = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, esc, strict=True)) + "}"


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        out = [f"{name}_bucket{_labels((*labels, ('le', repr(b))))} {c}" for b, c in zip(BUCKETS, self.counts, strict=True)]
        out.append(f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {self.total}")
        out.append(f"{name}_sum{_labels(labels)} {self.sum:.6f}")
        out.append(f"{name}_count{_labels(labels)} {self.total}")
        return out


class Metrics:
    HELP = {
        "http_requests_total": ("counter", "HTTP answers by route and status code"),
        "completions_total": ("counter", "chat completions that ended, by outcome"),
        "queue_depth": ("gauge", "requests waiting for the model"),
        "running": ("gauge", "requests running on the model (0 or 1)"),
        "queue_capacity": ("gauge", "requests that may wait before new ones get 429"),
        "request_seconds": ("histogram", "admission to the end of a completion, queue included"),
        "queue_wait_seconds": ("histogram", "admission to the start of a completion"),
        "stage_seconds": ("histogram", "wall time of each pipeline stage"),
        "tokens_total": ("counter", "tokens generated, by stage"),
        "budget_events_total": ("counter", "budget controller actions, by kind"),
        "cache_hits_total": ("counter", "cache hits, by cache"),
    }

    def __init__(self, queue_capacity: int) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self._hists: dict[str, dict[tuple, _Histogram]] = defaultdict(dict)
        self._gauges: dict[str, float] = {"queue_depth": 0, "running": 0, "queue_capacity": queue_capacity}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        with self._lock:
            self._counters[name][tuple(sorted(labels.items()))] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            hist = self._hists[name].get(key)
            if hist is None:
                hist = self._hists[name][key] = _Histogram()
            hist.observe(value)

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (tests and the page read these)."""
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in self.HELP.items():
                full = PREFIX + name
                lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}"]
                if kind == "gauge":
                    lines.append(f"{full} {self._gauges.get(name, 0):g}")
                elif kind == "counter":
                    for key, v in sorted(self._counters.get(name, {}).items()):
                        lines.append(f"{full}{_labels(key)} {v:g}")
                else:
                    for key, hist in sorted(self._hists.get(name, {}).items()):
                        lines += hist.lines(full, key)
        return "\n".join(lines) + "\n"
