"""Copies of a bundle with one thing changed, for measurements against the original.

`bundle_variant` hard-links every file (copies across filesystems), lets the caller change
files and the manifest in the staging folder, rehashes and checks the result. A variant
already at the destination that passes a size check is reused, so a rerun starts at once.

- `anyres_variant`: the paper's any-resolution layout (pinpoints (1x1)..(6x6) of the
  view size, `anyres_max_9`) with a random `image_newline`, for random-weight workloads:
  speed depends on the token count, not on what the newline vector holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.bundle_writer import file_entries
from export.checkpoint import BUNDLE_NEWLINE
from export.compose import place
from runtime import anyres
from runtime.atomic import staged_dir
from runtime.bundle import MANIFEST_NAME, Bundle, open_bundle
from runtime.config_io import save_json
from runtime.errors import BundleError
from runtime.manifest import FORMAT_VERSION, ImageLayout, Manifest

# LLaVA-OneVision's (and the paper's) training settings: image_grid_pinpoints "(1x1),...,(6x6)",
# image_aspect_ratio anyres_max_9
PAPER_PINPOINTS = "(1x1),...,(6x6)"
PAPER_MAX_TILES = 9


def bundle_variant(bundle: Bundle, dst: Path, change: Callable[[Path, Manifest], Manifest]) -> Path:
    """A copy of `bundle` at `dst` changed by `change(staging_folder, manifest) -> manifest`
    (which may add or remove files there; the files list is recomputed); reused when there."""
    if (dst / MANIFEST_NAME).is_file():
        try:
            open_bundle(dst, verify="size")
            return dst
        except BundleError:
            pass
    m = bundle.manifest
    with staged_dir(dst, marker=MANIFEST_NAME) as tmp:
        for rel in m.files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            place(bundle.path(rel), tmp / rel)
        manifest = change(tmp, m)
        save_json(dataclasses.replace(manifest, files=file_entries(tmp)), tmp / MANIFEST_NAME)
        open_bundle(tmp, verify="full")
    return dst


def has_anyres_layout(bundle: Bundle) -> bool:
    entry = bundle.manifest.models.get("perception")
    lay = entry.image_layout if entry is not None else None
    return lay is not None and bool(lay.pinpoints) and lay.newline is not None


def anyres_variant(bundle: Bundle, dst: Path, *, seed: int = 0) -> Path:
    """`bundle` with the paper's any-resolution layout and a random image_newline (anyres
    is the variant's default input mode); its pooling is kept."""
    entry = bundle.manifest.model("perception")
    if entry.vision is None:
        raise BundleError("the perception model has no vision encoder: no any-resolution layout to add")
    tile = entry.vision.image_size

    def change(tmp: Path, m: Manifest) -> Manifest:
        hidden = entry.text.hidden_size
        # LLaVA initialises image_newline as randn / sqrt(hidden)
        vec = np.random.default_rng(seed).standard_normal(hidden).astype("<f4") / np.float32(np.sqrt(hidden))
        (tmp / BUNDLE_NEWLINE).write_bytes(vec.tobytes())
        pool = entry.image_layout.pool if entry.image_layout is not None else 1
        layout = ImageLayout(input_mode="anyres", pool=pool, pinpoints=anyres.parse_pinpoints(PAPER_PINPOINTS, tile),
                             max_tiles=PAPER_MAX_TILES, newline=BUNDLE_NEWLINE)
        models = {**m.models, "perception": dataclasses.replace(entry, image_layout=layout)}
        return dataclasses.replace(m, format_version=max(m.format_version, FORMAT_VERSION), models=models,
                                   name=f"{m.name}-anyres")

    return bundle_variant(bundle, dst, change)
