"""How one image becomes the perception model's image tokens: views, pooling, merge.

`ImageLayout` (in the manifest) says what the model was exported for; `resolve_layout`
applies the run-time overrides (`image_tokens`, `input_mode`, `max_image_tokens`) and
loads the `image_newline` vector, giving a `LayoutSpec`. For one image, `plan_image`
decides the views and the token count from the image size alone (before any encoding:
the deadline and memory planners count them), `image_views` cuts the views, and
`encode_image` runs the vision encoder once per view (llama.cpp's mtmd or the ONNX vision
graph: the same numpy in, the same numpy out), pools each view's grid and, for
`anyres`, merges the views with the newline into one sequence.

Modes and their cost at SigLIP-so400m 384 px (27 x 27 per view):
- `single`: one view, 729 tokens; pooled 196 (stride 2) or 81 (stride 3);
- `anyres`: base view + tiles (see `runtime.anyres`): 1,485 tokens for a 384 x 384 image,
  2,929 for 640 x 480 unpooled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from runtime import anyres
from runtime.anyres import AnyresPlan
from runtime.bundle import Bundle
from runtime.errors import BundleError, InputError
from runtime.image import load_and_preprocess, load_image, preprocess
from runtime.image_pool import POOL_STRIDES, pool_tokens, pooled_side
from runtime.manifest import ImageLayout, ImagePreprocess, ModelEntry

INPUT_MODES = ("single", "anyres")


@dataclass(frozen=True)
class LayoutSpec:
    """The layout a pipeline runs: the manifest's, with run-time overrides applied."""

    input_mode: str  # "single" | "anyres"
    pool: int  # LLaVA-OV bilinear pooling stride after the projector (1 = none)
    tile: int  # pixels a side of one view (vision.image_size)
    grid: int  # the encoder's grid side per view (27)
    hidden: int  # embedding width (the LM's hidden size)
    pinpoints: anyres.Pinpoints = ()
    max_tiles: int | None = None
    max_image_tokens: int | None = None  # cap: fewer tiles (anyres) before any encoding
    newline: np.ndarray | None = None  # [hidden] float32, anyres only

    @property
    def side(self) -> int:
        """Grid side of one view after pooling."""
        return pooled_side(self.grid, self.pool)

    @property
    def view_tokens(self) -> int:
        return self.side * self.side

    def max_tokens(self) -> int:
        """The most image tokens any image can take (sizes the perception context)."""
        if self.input_mode == "single":
            return self.view_tokens
        bound = anyres.max_tokens(self.pinpoints, tile=self.tile, side=self.side, max_tiles=self.max_tiles)
        return bound if self.max_image_tokens is None else min(bound, max(self.max_image_tokens, self.view_tokens))

    def key(self) -> str:
        """What the embeddings of an image depend on besides its pixels and the model."""
        return f"{self.input_mode}|pool={self.pool}|cap={self.max_image_tokens}"


@dataclass(frozen=True)
class ImagePlan:
    """One image's views and token count, known before encoding."""

    views: int
    tokens: int
    anyres: AnyresPlan | None = None  # None: one view (single mode, or anyres capped down to it)


def image_tokens_to_pool(grid: int, image_tokens: int) -> int:
    """The pooling stride giving `image_tokens` per view (729 -> 1, 196 -> 2, 81 -> 3 at 27)."""
    options = {pooled_side(grid, s) ** 2: s for s in reversed(POOL_STRIDES)}  # the smallest stride wins
    if image_tokens not in options:
        raise InputError(f"image tokens must be one of {', '.join(str(n) for n in sorted(options, reverse=True))} "
                         f"for this model ({grid}x{grid} per view), not {image_tokens}")
    return options[image_tokens]


def read_newline(bundle: Bundle, layout: ImageLayout, hidden: int) -> np.ndarray:
    """The bundle's image_newline vector: raw float32 little-endian, `hidden` values."""
    if layout.newline is None:
        raise BundleError("the manifest's image_layout has no newline file, which anyres needs")
    path = bundle.path(layout.newline)
    data = path.read_bytes()
    if len(data) != hidden * 4:
        raise BundleError(f"{layout.newline}: {len(data)} bytes, expected {hidden * 4} (float32 x {hidden})")
    vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(vec).all():
        raise BundleError(f"{layout.newline}: the image_newline vector holds NaN or infinite values")
    return vec


def resolve_layout(bundle: Bundle | None, entry: ModelEntry, *, image_tokens: int | None = None,
                   input_mode: str | None = None, max_image_tokens: int | None = None) -> LayoutSpec:
    """The manifest's layout for the perception `entry`, with the caller's overrides."""
    if entry.vision is None:
        raise BundleError(f"the {entry.role} model has no vision encoder")
    layout = entry.image_layout or ImageLayout()
    grid = entry.vision.image_size // entry.vision.patch_size
    pool = layout.pool if image_tokens is None else image_tokens_to_pool(grid, image_tokens)
    mode = layout.input_mode if input_mode is None else input_mode
    if mode not in INPUT_MODES:
        raise InputError(f"input mode must be single or anyres, not {mode!r}")
    if max_image_tokens is not None and (isinstance(max_image_tokens, bool) or not isinstance(max_image_tokens, int)
                                         or max_image_tokens < 1):
        raise InputError(f"max image tokens must be an integer >= 1, got {max_image_tokens!r}")
    newline = None
    if mode == "anyres":
        if not layout.pinpoints or layout.newline is None or bundle is None:
            raise InputError("this bundle's perception model has no any-resolution layout (pinpoints and "
                             "image_newline): export a converted paper checkpoint for anyres")
        newline = read_newline(bundle, layout, entry.text.hidden_size)
    spec = LayoutSpec(mode, pool, entry.vision.image_size, grid, entry.text.hidden_size,
                      tuple(tuple(p) for p in layout.pinpoints), layout.max_tiles, max_image_tokens, newline)
    if max_image_tokens is not None and max_image_tokens < spec.view_tokens:
        raise InputError(f"max image tokens {max_image_tokens} is below one view's {spec.view_tokens} tokens")
    return spec


def plan_image(spec: LayoutSpec, size: tuple[int, int]) -> ImagePlan:
    """Views and tokens for an image of `size` (width, height); honours the token cap."""
    if spec.input_mode == "single":
        return ImagePlan(1, spec.view_tokens)
    plan = anyres.plan_with_cap(size, spec.pinpoints, tile=spec.tile, side=spec.side, max_tiles=spec.max_tiles,
                                max_tokens=spec.max_image_tokens)
    if plan is None:  # not even one tile fits the cap: the base view alone
        return ImagePlan(1, spec.view_tokens)
    return ImagePlan(plan.views, plan.tokens, plan)


def load_views(source: object, spec: LayoutSpec, prep: ImagePreprocess) -> tuple[np.ndarray, ImagePlan, str]:
    """Decode an image (bounded, checked: `runtime.image`) into its views, plan and cache key.

    `single` decodes no more pixels than one view needs; `anyres` needs the image at its
    original size (the plan depends on it), so it decodes it whole (at most the loader's
    pixel cap) and cuts the views exactly as the fork did.
    """
    if spec.input_mode == "single":
        pixels, _ = load_and_preprocess(source, prep)
        views, plan = pixels[None], ImagePlan(1, spec.view_tokens)
    else:
        img = load_image(source)
        plan = plan_image(spec, img.size)
        views = image_views(img, plan, prep)
    return views, plan, views_hash(views, spec, plan)


def image_views(img: Image.Image, plan: ImagePlan, prep: ImagePreprocess) -> np.ndarray:
    """A decoded RGB image's views for `plan`, uint8 [views, size, size, 3]: the fork's base
    view + tiles, or the one preprocessed view (training cuts its views here too)."""
    return anyres.anyres_views(img, plan.anyres) if plan.anyres is not None else preprocess(img, prep)[None]


def views_hash(views: np.ndarray, spec: LayoutSpec, plan: ImagePlan) -> str:
    """Content hash of an image's views, with what else its embeddings depend on."""
    h = hashlib.sha256()
    h.update(repr((views.shape, spec.key(), plan.anyres)).encode())
    h.update(np.ascontiguousarray(views).tobytes())
    return h.hexdigest()


def encode_image(vision: object, views: np.ndarray, plan: ImagePlan, spec: LayoutSpec) -> np.ndarray:
    """Run the encoder per view, pool each grid, merge: float32 [plan.tokens, hidden]."""
    feats = []
    for view in views:
        out = np.asarray(vision.encode(view), dtype=np.float32)  # type: ignore[attr-defined]
        if out.shape != (spec.grid * spec.grid, spec.hidden):
            raise BundleError(f"the vision encoder returned embeddings of shape {out.shape}, the manifest says "
                              f"{(spec.grid * spec.grid, spec.hidden)} (mismatched shapes)")
        feats.append(pool_tokens(out, spec.pool))
    if plan.anyres is None:
        return feats[0]
    assert spec.newline is not None
    return anyres.merge(feats[0], np.stack(feats[1:]), plan.anyres, spec.newline)
