"""Options several subcommands share, spelled and checked the same way everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.errors import InputError


def add_options(parser: argparse.ArgumentParser) -> None:
    """Multiple-choice options: `--options A B C`; `--option A --option B` is the same."""
    parser.add_argument("--options", nargs="+", action="extend", metavar="OPT",
                        help="multiple-choice options, shown as A, B, C... "
                        "(`--option OPT`, repeated, says the same)")
    parser.add_argument("--option", dest="options", nargs=1, action="extend", metavar="OPT",
                        help=argparse.SUPPRESS)


def add_bundle_options(parser: argparse.ArgumentParser) -> None:
    """--bundle, --profile and --backend of the commands that keep a pipeline loaded (serve,
    demo, watch)."""
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: the shipped one)")
    parser.add_argument("--profile", help="device profile name or file (default: the bundle's profile.json, "
                        "else the detected device)")
    parser.add_argument("--backend", choices=("llamacpp", "onnx"), help="force a backend")


def add_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verify", choices=("full", "size"), default="full",
                        help="check the bundle's files by sha256 (full, the default) or by size only "
                        "(faster on boards: hashing a multi-GB bundle takes a while there)")


def add_gpu_layers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-layers", type=int, metavar="N",
                        help="llama.cpp layers to offload to the GPU (needs a CUDA build; 999 = all, "
                        "0 = CPU only; default: the device profile's)")


def check_gpu_layers(value: int | None) -> None:
    if value is not None and value < 0:
        raise InputError(f"--gpu-layers must be 0 or more (999 offloads every layer), got {value}")


def add_image_layout(parser: argparse.ArgumentParser) -> None:
    """How an image becomes perception tokens, overriding the bundle's `image_layout`."""
    parser.add_argument("--image-tokens", type=int, metavar="N",
                        help="image tokens per view: 729, 196 or 81 for a 27x27 model (LLaVA-OneVision "
                        "pooling; default: the bundle's)")
    parser.add_argument("--input-mode", choices=("single", "anyres"),
                        help="one view, or the paper's any-resolution tiles (default: the bundle's)")
    parser.add_argument("--max-image-tokens", type=int, metavar="N",
                        help="anyres: use fewer tiles so an image takes at most N tokens")


def image_layout_kwargs(args: argparse.Namespace) -> dict[str, int | str | None]:
    """The `ExtractThink.load` keywords of `add_image_layout`'s options."""
    return {"image_tokens": args.image_tokens, "input_mode": args.input_mode,
            "max_image_tokens": args.max_image_tokens}


def add_prefix_cache(parser: argparse.ArgumentParser) -> None:
    # a string, checked by `prefix_cache_mb`: argparse's own type errors print the usage too
    parser.add_argument("--prefix-cache-mb", metavar="N",
                        help="MiB of host memory for the perception model's KV state after each image (and the "
                        "reasoner's after the fixed start of its prompts), so a second question on the same "
                        "image skips the vision encoder and the image prefill; 0 turns it off (default 256)")
    parser.add_argument("--prompt-cache", metavar="DIR", help="keep the reasoner's prompt starts in DIR for later runs")


def prompt_cache_dir(value: str | None) -> Path | None:
    """`--prompt-cache` as a folder path (None: not given); an existing non-folder is refused."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not value.strip() or (path.exists() and not path.is_dir()):
        raise InputError(f"--prompt-cache must name a folder, got {value!r}")
    return path


def prefix_cache_mb(value: str | None) -> int | None:
    """`--prefix-cache-mb` as a whole number of MiB >= 0 (None: not given)."""
    if value is None:
        return None
    try:
        mb = int(value.strip())
    except ValueError:
        mb = -1
    if mb < 0:
        raise InputError(f"--prefix-cache-mb must be a whole number of MiB, 0 or more (0 turns the cache off), "
                         f"got {value!r}")
    return mb


def add_kv_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kv-cache", choices=("f16", "f32", "q8_0"), default="f16",
                        help="KV cache type: q8_0 takes about half of f16's memory (llama.cpp only; default f16)")


def add_lookup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lookup", type=int, default=0, metavar="K",
                        help="prompt-lookup decoding: draft up to K tokens per step from n-gram matches in the "
                        "prompt and output, verified in one batch (same greedy output; 0 = off, the default)")


def add_vision_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vision-backend", choices=("llamacpp", "onnx"),
                        help="run the perception model's vision encoder on this backend: onnx runs the bundle's "
                        "ONNX vision graph beside a llama.cpp text model (default: the text model's)")
