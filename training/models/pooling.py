"""LLaVA-OneVision's token pooling in the torch model, as the runtime applies it.

`get_2dPool` ("bilinear"): the projector output of each image, a g x g grid, is resized
to ceil(g / stride) a side with `F.interpolate(mode="bilinear")` (align_corners False).
The runtime does the same in numpy (`runtime.image_pool`, bit-identical on x86 CPUs), so a
model trained pooled runs pooled after export, and an unpooled one can be evaluated pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from runtime.errors import ConfigError
from runtime.image_pool import POOL_STRIDES, pooled_side
from training.models.anyres import merge_images

CONFIG_KEY = "image_pool"  # recorded in the checkpoint's config.json; export reads it


def check_pool(stride: int) -> int:
    if isinstance(stride, bool) or stride not in POOL_STRIDES:
        raise ConfigError(f"image_pool must be one of {', '.join(map(str, POOL_STRIDES))}, not {stride!r}")
    return stride


def image_tokens(vision_config: Any, stride: int) -> int:
    """Image tokens per image after pooling (729 / 196 / 81 for a 27 x 27 grid)."""
    return pooled_side(vision_config.image_size // vision_config.patch_size, stride) ** 2


def pool_features(feat: torch.Tensor, stride: int) -> torch.Tensor:
    """[g*g, D] -> [ceil(g/stride)^2, D] (row-major tokens)."""
    if stride == 1:
        return feat
    n, d = feat.shape
    g = math.isqrt(n)
    side = pooled_side(g, stride)
    x = feat.view(1, g, g, d).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=[side, side], mode="bilinear")
    return x.permute(0, 2, 3, 1).reshape(side * side, d)


def image_inputs(model: Any, pixel_values: torch.Tensor, stride: int, plans: Sequence[Any] | None = None,
                 newline: torch.Tensor | None = None) -> dict[str, Any]:
    """The keyword arguments that give a `LlavaModel` forward its image features.

    Unpooled single views: the pixels as they are. Otherwise the features computed here
    (the model's own `get_image_features`: tower, feature layer, projector), pooled per
    view and, for any-resolution input (`plans`: one `runtime.anyres.AnyresPlan` per
    image, its views consecutive in `pixel_values`), merged per image with `newline`
    (`training.models.anyres`), handed over as `mm_encoder_outputs`, so the prompt holds
    the pooled (or merged) count of image tokens."""
    if stride == 1 and plans is None:
        return {"pixel_values": pixel_values}
    inner = model.model
    cfg = model.config
    out = inner.get_image_features(pixel_values=pixel_values, vision_feature_layer=cfg.vision_feature_layer,
                                   vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                                   return_dict=True)
    feats = [pool_features(f, stride) for f in out.pooler_output]
    if plans is not None:
        if newline is None:
            raise ValueError("any-resolution input needs the image_newline vector")
        feats = merge_images(feats, plans, newline)
    out.pooler_output = feats
    return {"mm_encoder_outputs": {"image": out}}
