"""How fast the synthetic world generates images (issue: >= 50 images/s at 64-128 px).

    python -m benchmarks.synth_speed [--sizes 64 128] [--images 400] [--repeats 5] [--json OUT]

Two measurements per image size, both with 4-8 objects per scene:
- render: sample a scene graph, draw it, encode the PNG;
- full:   everything `edge data synth` does per image (render + questions + every target).
Each is warmed up, repeated, and reported as the median images/s with min and max.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from runtime.atomic import atomic_write_text
from training.data.render import render_png
from training.data.sampling import sample_scene
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, make_example


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def measure(size: int, images: int, repeats: int, questions: int = 3) -> dict:
    scene_cfg = SceneConfig(image_size=size, min_objects=4, max_objects=8)
    synth_cfg = SynthConfig(scene=scene_cfg, questions_per_image=questions)
    out = {}
    for name, fn in (
        ("render", lambda i: render_png(sample_scene(i, scene_cfg), size)),
        ("full", lambda i: make_example(synth_cfg, "train", i)),
    ):
        _rate(fn, max(10, images // 10))  # warm-up: fonts, caches
        rates = [_rate(fn, images) for _ in range(repeats)]
        out[name] = {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
                     "max": round(max(rates), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--images", type=int, default=400, help="images per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    results = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "images": args.images, "repeats": args.repeats, "objects": "4-8",
        "sizes": {str(s): measure(s, args.images, args.repeats) for s in args.sizes},
    }
    print("| size | render+PNG images/s (min-max) | full example images/s (min-max) |")
    print("|---|---|---|")
    for size, r in results["sizes"].items():
        print(f"| {size} px | {r['render']['median']} ({r['render']['min']}-{r['render']['max']}) | "
              f"{r['full']['median']} ({r['full']['min']}-{r['full']['max']}) |")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
