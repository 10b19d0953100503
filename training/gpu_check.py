"""GPU check: a few hundred bf16 steps of the small recipe and one step at the paper's 0.6B
shape, with tokens/s and peak GPU memory.

    python -m training.gpu_check [--small-steps 300] [--work runs/gpu-check] [--json]

Needs a CUDA GPU and nothing from the network: the synthetic data is generated here, the
0.6B perception module (SigLIP-so400m @ 384 px + Qwen3-0.6B, 729 image tokens) is built
with random weights instead of the hub checkpoints (same shapes, same cost), and Qwen3's
tokenizer is rebuilt offline. Prints one line per run and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from training.config import RECIPES, apply_overrides, read_recipe_data, recipe_from_data
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, write_dataset
from training.loop import train_stage
from training.models.sizes import vision_size

log = logging.getLogger(__name__)


def _synth(out: Path, image_size: int, train: int) -> Path:
    if not (out / "dataset.json").is_file():
        write_dataset(out, SynthConfig(seed=0, scene=SceneConfig(image_size=image_size), train=train, val=0,
                                       test=0), overwrite=True)
    return out


def _measure(fn):
    import torch  # deferred: `--help` works without the training stack

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize()
    return result, time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0


def small_recipe(work: Path, steps: int, *, dry_run: bool = False) -> dict:
    """The synthetic-cpu recipe's align stage, bf16, `steps` steps."""
    data_dir = _synth(work / "small" / "data", 96, 40 if dry_run else 2000)
    raw = read_recipe_data(RECIPES / "synthetic-cpu.yaml")
    raw = apply_overrides(raw, [f"vars.work={work / 'small'}", "threads=0", f"stages.align.steps={steps}",
                                "stages.align.precision=bf16", f"stages.align.save_every={steps}"])
    if dry_run:
        raw = apply_overrides(raw, ["tokenizer.vocab_size=400", "stages.align.micro_batch_size=2"])
    recipe = recipe_from_data(raw)
    assert recipe.tokenizer.corpus == str(data_dir)
    res, wall, peak = _measure(lambda: train_stage(recipe, "align", fresh=True))
    return {"run": "small recipe (align, bf16)", "steps": res.steps, "tokens": res.tokens,
            "tokens_per_s": round(res.tokens / res.seconds, 1), "wall_s": round(wall, 1),
            "peak_gpu_gib": round(peak, 2), "first_loss": res.first_loss, "last_loss": res.last_loss}


def paper_step(work: Path, micro: int, *, dry_run: bool = False) -> dict:
    """One optimizer step of visual instruction tuning at the paper's 0.6B shape (random init)."""
    data_dir = _synth(work / "paper" / "data", 384, max(micro, 8))
    raw = read_recipe_data(RECIPES / "paper-0.6b.yaml")
    raw["vars"]["run"] = str(work / "paper")
    raw["perception"]["vision_init"] = None  # no network: same shapes, random weights
    raw["perception"]["text_init"] = None
    if dry_run:  # plumbing only: tiny shapes
        raw["perception"].update({"vision": "siglip-tiny", "text": "qwen3-tiny"})
    instruct = raw["stages"]["instruct"]
    instruct.update({"init": "recipe", "steps": 1, "epochs": 0, "micro_batch_size": micro,
                     "global_batch_size": 0, "grad_accum": 1, "save_every": 0, "precision": "bf16",
                     "data": [{"kind": "synthetic", "path": str(data_dir), "style": "extraction"}]})
    raw["stages"] = {"instruct": instruct}
    recipe = recipe_from_data(raw)
    res, wall, peak = _measure(lambda: train_stage(recipe, "instruct", fresh=True))
    n_image = vision_size(recipe.perception.vision).tokens_per_image
    return {"run": f"paper 0.6B shape (instruct, bf16, micro batch {micro}, {n_image} image tokens)",
            "steps": res.steps, "tokens": res.tokens, "tokens_per_s": round(res.tokens / res.seconds, 1),
            "wall_s": round(wall, 1), "peak_gpu_gib": round(peak, 2), "loss": res.last_loss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small-steps", type=int, default=300)
    p.add_argument("--paper-micro-batch", type=int, default=4)
    p.add_argument("--work", type=Path, default=Path("runs/gpu-check"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="check the plumbing on a CPU with tiny shapes (no timings worth reading)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch  # deferred (see _measure)

    dry = args.cpu_dry_run
    if not torch.cuda.is_available() and not dry:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    device = "cpu (dry run)" if dry else torch.cuda.get_device_name(0)
    bf16 = dry or torch.cuda.is_bf16_supported()
    print(f"device: {device}, torch {torch.__version__}, bf16 {bf16}", flush=True)
    out = {"device": device, "runs": []}
    for run in (lambda: small_recipe(args.work, args.small_steps, dry_run=dry),
                lambda: paper_step(args.work, args.paper_micro_batch, dry_run=dry)):
        r = run()
        out["runs"].append(r)
        print(f"{r['run']}: {r['steps']} steps, {r['tokens_per_s']:,.0f} tokens/s, "
              f"peak {r['peak_gpu_gib']:.2f} GiB, {r['wall_s']:.1f} s", flush=True)
    if args.json:
        print(json.dumps(out))
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
