"""How the thread count behaves when other processes hold CPU cores.

    python examples/threads_under_load.py                 # the machine as it is
    python examples/threads_under_load.py --busy 1        # plus one busy-loop process per CPU given

Runs the shipped default bundle's example question with 1..N threads (and the runtime's
default) on each installed backend and prints the median seconds per answer, with the
load average before and after. Multi-threaded decoding waits at a barrier for every
thread after each operation, so a thread whose core is taken stalls them all.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time

from runtime.backends import installed_backends
from runtime.defaults import default_bundle_path
from runtime.pipeline import ExtractThink
from runtime.threads import default_threads


def _spin() -> None:
    while True:
        pass


def measure(backend: str, threads: int | None, repeat: int) -> list[float]:
    root = default_bundle_path()
    ex = json.loads((root / "manifest.json").read_text())["examples"][0]
    args = (str(root / ex["image"]), ex["question"], ex["options"].split("\n"))
    times = []
    with ExtractThink.load(None, backend=backend, threads=threads, speed_cache=False) as et:
        et.answer(*args, sampling="greedy")  # warm-up: caches, allocations
        et.embedding_cache.clear()
        et.extraction_cache.clear()
        for _ in range(repeat):
            t0 = time.perf_counter()
            et.answer(*args, sampling="greedy", seed=len(times))
            times.append(time.perf_counter() - t0)
            et.embedding_cache.clear()
            et.extraction_cache.clear()
    return times


def main(args: argparse.Namespace) -> None:
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        print(f"cpus {os.cpu_count()}, busy-loop processes {args.busy}, load average before "
              f"{os.getloadavg()[0]:.2f}, default threads now {default_threads()}")
        counts: list[int | None] = list(range(1, (os.cpu_count() or 1) + 1)) + [None]
        for backend, ok in installed_backends().items():
            if not ok:
                continue
            for threads in counts:
                times = measure(backend, threads, args.repeat)
                label = f"default ({default_threads()})" if threads is None else str(threads)
                print(f"{backend:9s} threads {label:12s} median {statistics.median(times):7.3f} s  "
                      f"min {min(times):7.3f} s  max {max(times):7.3f} s", flush=True)
        print(f"load average after {os.getloadavg()[0]:.2f}")
    finally:
        for p in spinners:
            p.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes to start first")
    parser.add_argument("--repeat", type=int, default=5, help="timed answers per setting")
    main(parser.parse_args())
