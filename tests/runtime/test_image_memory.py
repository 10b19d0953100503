"""Image memory is bounded by construction: hostile shapes and depths cannot balloon it.

Peaks are measured as the growth of the peak RSS (VmHWM) of a fresh subprocess around
one load, so Pillow's own allocations count too (tracemalloc cannot see them). Not
`ru_maxrss`: Linux carries it over `exec` from the parent, so pytest's own size would hide
any growth below it.
Every bound is a generous multiple of the decoded frame; the numbers before the fix are
in each test's comment (this 2-core machine, Pillow 13).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.errors import ImageError
from runtime.image import MAX_ASPECT_RATIO, load_and_preprocess, load_image, preprocess
from runtime.manifest import ImagePreprocess

MB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]

_MEASURE = """
import json, sys
from pathlib import Path
from runtime.image import load_and_preprocess, load_image, preprocess
from runtime.manifest import ImagePreprocess
path, mode, how = sys.argv[1:4]
prep = ImagePreprocess(size=96, mean=(0.5,) * 3, std=(0.5,) * 3, mode=mode)
data = Path(path).read_bytes()
def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm_kb()
if how == "pipeline":  # what runtime.pipeline does today
    pixels = preprocess(load_image(data), prep)
else:
    pixels, _ = load_and_preprocess(data, prep)
after = hwm_kb()
print(json.dumps({"peak_growth_kb": after - before, "shape": list(pixels.shape)}))
"""


pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="measures VmHWM (Linux)")


def _peak_growth(tmp_path: Path, data: bytes, mode: str, how: str) -> int:
    path = tmp_path / "input.img"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), mode, how], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [96, 96, 3]
    return result["peak_growth_kb"] * 1024


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _ramp(h: int, w: int, channels: int) -> np.ndarray:
    """A cheap, compressible test pattern (random pixels would make huge files)."""
    arr = np.empty((h, w, channels), dtype=np.uint8)
    arr[...] = (np.arange(w, dtype=np.uint8)[None, :, None] + np.arange(h, dtype=np.uint8)[:, None, None])
    return arr


def _png_header_claiming(width: int, height: int) -> bytes:
    """A valid 8x8 PNG whose IHDR claims another size (with a correct CRC): never decodable."""
    import struct
    import zlib

    data = bytearray(_png(_ramp(8, 8, 3)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])) & 0xFFFFFFFF)
    return bytes(data)


def test_extreme_strip_is_refused_from_the_header_naming_the_ratio():
    # A 150 KB 1 x 39M PNG peaked at 1.3-1.8 GB (Pillow's resampling coefficients for a
    # 400,000:1 squeeze); in "pad" mode it tried to allocate a 39M x 39M square.
    for w, h in ((39_000_000, 1), (1, 39_000_000), (2100, 100)):
        with pytest.raises(ImageError, match=rf"{w}x{h} has an aspect ratio of [\d,]+:1, over the 20:1 limit"):
            load_image(_png_header_claiming(w, h))
    assert MAX_ASPECT_RATIO == 20
    assert load_image(_png(_ramp(10, 200, 3))).size == (200, 10)  # 20:1 itself is fine
    with pytest.raises(ImageError, match="aspect ratio of 21:1"):
        load_image(np.zeros((10, 210, 3), np.uint8))


def test_sixteen_bit_frame_is_scaled_in_strips(tmp_path):
    # 9 MP 16-bit greyscale, 18 MB decoded: +246 MiB before (whole-frame float64 copies).
    arr = np.empty((3000, 3000), dtype=np.uint16)
    arr[...] = np.arange(3000, dtype=np.uint16)[None, :] * 20
    data = _png(arr)
    assert _peak_growth(tmp_path, data, "resize", "pipeline") < 108 * MB
    assert _peak_growth(tmp_path, data, "resize", "load_and_preprocess") < 72 * MB


def test_wide_image_in_pad_mode_is_reduced_before_padding(tmp_path):
    # 16000x1000 (16:1, allowed) in "pad" mode was padded to a 16000^2 square first:
    # +1042 MiB before. Decoded, the frame is 64 MB (Pillow keeps RGB as 4 bytes a pixel).
    data = _png(_ramp(1000, 16000, 3))
    assert _peak_growth(tmp_path, data, "pad", "pipeline") < 160 * MB


def test_jpeg_is_drafted_while_decoding(tmp_path):
    # 12 MP JPEG: +142 MiB before (a full decode is 48 MB); now decoded at 1/8 scale.
    buf = io.BytesIO()
    Image.fromarray(_ramp(3000, 4000, 3)).save(buf, "JPEG", quality=85)
    assert _peak_growth(tmp_path, buf.getvalue(), "resize", "load_and_preprocess") < 24 * MB


def test_rgba_is_reduced_and_composited_without_full_size_copies(tmp_path):
    # 6 MP RGBA PNG, 24 MB decoded: +119 MiB before (convert + alpha_composite copies).
    arr = _ramp(2000, 3000, 4)
    arr[..., 3] = 200
    assert _peak_growth(tmp_path, _png(arr, "RGBA"), "resize", "load_and_preprocess") < 56 * MB


PREP = ImagePreprocess(size=64, mean=(0.5,) * 3, std=(0.5,) * 3)


def _photo(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(1)
    small = (rng.random((h // 50, w // 50, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)  # smooth, photo-like


def test_reduced_loading_matches_a_full_resolution_resize_closely():
    img = _photo(1200, 800)  # reduced 4x (kept >= 3x the 64-pixel target), JPEG drafted at 1/4
    full = np.asarray(img.resize((64, 64), Image.Resampling.BICUBIC), dtype=np.int16)
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        img.save(buf, fmt, quality=95, compress_level=1)
        pixels, _ = load_and_preprocess(buf.getvalue(), PREP)
        assert np.abs(pixels.astype(np.int16) - full).mean() < 2.0, fmt
    small = _photo(150, 100)  # below 3x the target: no reduction, exactly Pillow's resize
    assert np.array_equal(preprocess(small, PREP), np.asarray(small.resize((64, 64), Image.Resampling.BICUBIC)))


def test_exif_orientation_survives_drafting_and_reduction():
    img = Image.new("RGB", (4000, 2000), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 1000, 2000))  # blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(buf.getvalue(), for_prep=PREP)
    assert loaded.height > loaded.width and loaded.width < 2000  # drafted, then turned upright
    pixels, _ = load_and_preprocess(buf.getvalue(), PREP)
    assert pixels[:8].reshape(-1, 3).mean(0)[2] > 200  # the left band is now at the top


def test_sixteen_bit_is_scaled_by_its_maximum():
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    out = np.asarray(load_image(_png(arr)))
    assert out[:, :, 0].tolist() == [[0, 64], [128, 255]]
