"""An independent torch re-implementation of the paper fork's anyres merge, for tests.

Follows `llava_arch.prepare_inputs_labels_for_multimodal` (the `anyres_max` +
`spatial_unpad` branch) step by step: grid shape from the pinpoints, view / permute /
flatten, unpad with `int()`, bilinear shrink past max_tiles, a newline column, flatten,
base view first. It shares no code with `runtime.anyres`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def torch_grid_shape(size, pinpoints, tile):
    w, h = size
    best, best_eff, best_waste = None, 0, float("inf")
    for pw, ph in pinpoints:
        s = min(pw / w, ph / h)
        eff = min(int(w * s) * int(h * s), w * h)
        waste = pw * ph - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (pw, ph), eff, waste
    return best[0] // tile, best[1] // tile


def torch_unpad(t, size):
    w, h = size
    cur_h, cur_w = t.shape[1:]
    if w / h > cur_w / cur_h:
        new_h = int(h * (cur_w / w))
        pad = (cur_h - new_h) // 2
        return t[:, pad:cur_h - pad, :]
    new_w = int(w * (cur_h / h))
    pad = (cur_w - new_w) // 2
    return t[:, :, pad:cur_w - pad]


def torch_merge(views, size, pinpoints, tile, newline, max_tiles=9):
    """views [1 + n, side*side, D] (base first) -> [tokens, D], as the fork's merge."""
    base, tiles = views[0], views[1:]
    side = math.isqrt(base.shape[0])
    cols, rows = torch_grid_shape(size, pinpoints, tile)
    x = tiles.view(rows, cols, side, side, -1)
    x = x.permute(4, 0, 2, 1, 3).contiguous().flatten(1, 2).flatten(2, 3)  # [D, rows*side, cols*side]
    x = torch_unpad(x, size)
    _, h, w = x.shape
    if max_tiles is not None:
        times = math.sqrt(h * w / (max_tiles * side ** 2))
        if times > 1.1:
            x = F.interpolate(x[None], [int(h // times), int(w // times)], mode="bilinear")[0]
    x = torch.cat((x, newline[:, None, None].expand(*x.shape[:-1], 1)), dim=-1)
    x = x.flatten(1, 2).transpose(0, 1)
    return torch.cat((base, x), dim=0)


def pil_views(img, size, pinpoints, tile):
    """The fork's `process_anyres_image` pixels, uint8 [1 + n, tile, tile, 3] (base view first):
    resize (bicubic) and pad on black to the chosen canvas, cut tiles row-major."""
    import numpy as np
    from PIL import Image

    w, h = size
    cols, rows = torch_grid_shape(size, pinpoints, tile)
    cw, ch = cols * tile, rows * tile
    sx, sy = cw / w, ch / h
    if sx < sy:
        nw, nh = cw, min(math.ceil(h * sx), ch)
    else:
        nh, nw = ch, min(math.ceil(w * sy), cw)
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(img.resize((nw, nh), Image.Resampling.BICUBIC), ((cw - nw) // 2, (ch - nh) // 2))
    tiles = [canvas.crop((x, y, x + tile, y + tile)) for y in range(0, ch, tile) for x in range(0, cw, tile)]
    base = img.resize((tile, tile), Image.Resampling.BICUBIC)
    return np.stack([np.asarray(v, dtype=np.uint8) for v in [base, *tiles]])
