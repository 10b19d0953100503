"""LLaVA-OneVision's any-resolution input in the torch model, exactly as the runtime builds it.

Planning (which pinpoint, how many tiles, the unpad crop, the shrink, the token count) and
the views' pixels come from `runtime.anyres` / `runtime.image_layout`, so training and the
runtime cannot disagree about them. What is torch here is the differentiable merge: each
view's features (after the projector and the optional pooling) are laid out as one grid,
cropped, shrunk bilinearly past `max_tiles` (`F.interpolate`, as the fork and the runtime's
numpy), and the learned `image_newline` ends every row; the base view's tokens come first.

The newline is a parameter of the loss wrapper (`training.losses.TargetLoss`) and travels
beside the weights as raw float32 (`NEWLINE_FILE`, the converter's format); the layout is
recorded in the checkpoint's config.json under `CONFIG_KEY`, in the schema of a converted
paper checkpoint's `conversion.json`, so `edge export` ships both the same way.
torch is imported inside the functions: export reads the constants without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.anyres import AnyresPlan, parse_pinpoints
from runtime.errors import ConfigError
from runtime.image_layout import LayoutSpec

if TYPE_CHECKING:
    import torch

CONFIG_KEY = "image_layout"  # in the checkpoint's config.json: the any-resolution layout, or null
NEWLINE_FILE = "image_newline.f32"  # beside the weights: `hidden` float32 values, little-endian


def layout_spec(spec: Any, vision_config: Any, hidden: int) -> LayoutSpec | None:
    """The recipe's `perception` (input_mode, image_grid_pinpoints, anyres_max_tiles,
    image_pool) as the runtime's `LayoutSpec`; None for single-view training."""
    if spec.input_mode == "single":
        return None
    tile = vision_config.image_size
    try:
        pinpoints = parse_pinpoints(spec.image_grid_pinpoints, tile)
    except (ValueError, SyntaxError) as exc:
        raise ConfigError(f"perception.image_grid_pinpoints: {exc}") from None
    if spec.anyres_max_tiles is not None and spec.anyres_max_tiles < 1:
        raise ConfigError(f"perception.anyres_max_tiles must be >= 1 or null, got {spec.anyres_max_tiles}")
    return LayoutSpec("anyres", spec.image_pool, tile, tile // vision_config.patch_size, hidden, pinpoints,
                      spec.anyres_max_tiles)


def config_entry(layout: LayoutSpec | None) -> dict[str, Any] | None:
    """What the checkpoint's config.json records (export.checkpoint.image_layout reads it)."""
    if layout is None:
        return None
    return {"input_mode": "anyres", "tile": layout.tile, "pinpoints": [list(p) for p in layout.pinpoints],
            "max_tiles": layout.max_tiles, "newline": NEWLINE_FILE}


def initial_newline(hidden: int, seed: int, start: Path | None = None) -> torch.Tensor:
    """The newline of the folder a stage starts from (the checkpoint it resumes, the stage
    it continues) when that has one, else LLaVA's initialisation: randn / sqrt(hidden), seeded."""
    import torch

    if start is not None and (Path(start) / NEWLINE_FILE).is_file():
        return torch.from_numpy(read_newline(Path(start), hidden).copy())
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(hidden, generator=gen) / hidden ** 0.5


def read_newline(folder: Path, hidden: int) -> np.ndarray:
    path = Path(folder) / NEWLINE_FILE
    data = path.read_bytes()
    if len(data) != 4 * hidden:
        raise ConfigError(f"{path}: {len(data)} bytes, expected {4 * hidden} (float32 x {hidden})")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def newline_bytes(newline: torch.Tensor) -> bytes:
    return newline.detach().float().cpu().numpy().astype("<f4").tobytes()


def merge_views(feats: torch.Tensor, plan: AnyresPlan | None, newline: torch.Tensor) -> torch.Tensor:
    """feats [views, side*side, D] (base view first, then the tiles row-major) -> [tokens, D]."""
    import torch
    import torch.nn.functional as F

    if plan is None:  # one view
        return feats[0]
    s, d = plan.side, feats.shape[-1]
    if feats.shape != (plan.views, s * s, d):
        raise ValueError(f"features {tuple(feats.shape)} do not fit {plan.rows}x{plan.cols} tiles of {s}x{s}")
    grid = feats[1:].reshape(plan.rows, plan.cols, s, s, d).permute(0, 2, 1, 3, 4).reshape(plan.rows * s,
                                                                                          plan.cols * s, d)
    grid = grid[plan.crop_rows[0]:plan.crop_rows[1], plan.crop_cols[0]:plan.crop_cols[1]]
    if plan.shrunk:
        grid = F.interpolate(grid.permute(2, 0, 1)[None], size=[plan.out_rows, plan.out_cols],
                             mode="bilinear")[0].permute(1, 2, 0)
    rows = torch.cat([grid, newline.to(grid.dtype).expand(plan.out_rows, 1, d)], dim=1)
    return torch.cat([feats[0], rows.reshape(-1, d)])


def merge_images(view_feats: Sequence[torch.Tensor], plans: Sequence[AnyresPlan | None],
                 newline: torch.Tensor) -> list[torch.Tensor]:
    """Per-view features of a batch (all views of image 0, then image 1...) -> one merged
    sequence per image."""
    import torch

    out, i = [], 0
    for plan in plans:
        n = plan.views if plan is not None else 1
        out.append(merge_views(torch.stack(list(view_feats[i:i + n])), plan, newline))
        i += n
    if i != len(view_feats):
        raise ValueError(f"{len(view_feats)} views for images that plan {i}")
    return out
