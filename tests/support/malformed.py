"""The malformed-input corpus (tests/data/malformed/): hostile images, bundles, GGUF files,
archives, JSONL items and HTTP bodies, written byte by byte and deterministically.

    python -m tests.support.malformed          # rewrite tests/data/malformed/

`EXPECTED` says, for each file, which `edge` command reads it and what must come back: the
exit code and a phrase of the one error line (tests/test_malformed_corpus.py replays them;
HTTP bodies go through `edge serve`'s request parser and must give a 400). Files stay small:
a hostile size is declared in a header, never written out.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from runtime.atomic import atomic_write_bytes
from tests.support.gguf_bytes import build, s, tensor

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "malformed"
DEFAULT_MANIFEST = ROOT / "edge" / "assets" / "default_bundle" / "manifest.json"


@dataclass(frozen=True)
class Case:
    path: str  # relative to the corpus folder
    kind: str  # image | bundle | gguf | archive | jsonl | http
    exit: int  # the edge command's exit code (http: the HTTP status)
    match: str  # a regular expression the error line must contain


# ---- images ----------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, *, depth: int = 8, color: int = 2, palette: bool = False) -> bytes:
    """A PNG whose header declares `width` x `height` with one tiny IDAT: the size is a claim."""
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    if palette:
        out += _png_chunk(b"PLTE", b"\0\0\0\xff\xff\xff")
    return out + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def _encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF marker is rewritten to declare `width` x `height`."""
    data = bytearray(_encoded("JPEG", (16, 16)))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def images() -> dict[str, bytes]:
    png, jpg = _encoded("PNG", (64, 64)), _encoded("JPEG", (64, 64))
    return {
        "images/empty.png": b"",
        "images/text.png": b"this is not an image\n",
        "images/truncated.png": png[: len(png) // 2],
        "images/truncated.jpg": jpg[: len(jpg) // 2],
        "images/strip-1x40000.png": _encoded("PNG", (1, 40000), "L"),
        "images/huge-declared.png": png_header_only(100_000, 100_000),
        "images/huge-declared-16bit.png": png_header_only(30_000, 30_000, depth=16, color=0),
        "images/palette-bomb.png": png_header_only(40_000, 40_000, color=3, palette=True),
        "images/huge-declared.jpg": jpeg_with_size(65_000, 65_000),
        "images/zero-width.png": png_header_only(0, 16),
        "images/gzip-named.png": gzip.compress(b"\0" * 1000, mtime=0),
    }


# ---- bundles (a folder with a manifest.json and nothing else) --------------------------------


def _default_manifest() -> dict:
    return json.loads(DEFAULT_MANIFEST.read_text(encoding="utf-8"))


def _with(change) -> bytes:
    manifest = _default_manifest()
    change(manifest)
    return json.dumps(manifest, indent=1).encode()


def _set_image(**values):
    def change(m: dict) -> None:
        m["models"]["perception"]["image"].update(values)
    return change


def bundles() -> dict[str, bytes]:
    def traversal(m: dict) -> None:
        m["files"]["../../../etc/passwd"] = {"size": 10, "sha256": "0" * 64}

    def negative_size(m: dict) -> None:
        next(iter(m["files"].values()))["size"] = -5

    return {
        "bundles/not-json/manifest.json": b"{\"format\": \"extract-think-bundle\",",
        "bundles/not-utf8/manifest.json": b"{\"name\": \"\xff\xfe\"}",
        "bundles/a-list/manifest.json": b"[1, 2, 3]",
        "bundles/deeply-nested/manifest.json": b"[" * 20_000 + b"]" * 20_000,
        "bundles/huge-number/manifest.json": _with(lambda m: m.update(format_version=0)).replace(
            b'"format_version": 0', b'"format_version": ' + b"9" * 5000),
        "bundles/wrong-type/manifest.json": _with(lambda m: m.update(format_version="1")),
        "bundles/unknown-key/manifest.json": _with(lambda m: m.update(extra_field=True)),
        "bundles/other-format/manifest.json": _with(lambda m: m.update(format="something-else")),
        "bundles/path-traversal/manifest.json": _with(traversal),
        "bundles/negative-size/manifest.json": _with(negative_size),
        "bundles/image-size-huge/manifest.json": _with(_set_image(size=1_000_000)),
        "bundles/image-size-zero/manifest.json": _with(_set_image(size=0)),
        "bundles/image-std-zero/manifest.json": _with(_set_image(std=[0.5, 0.0, 0.5])),
        "bundles/files-missing/manifest.json": _with(lambda m: None),
    }


# ---- GGUF files ------------------------------------------------------------------------------


def ggufs() -> dict[str, bytes]:
    arch = s("general.architecture") + struct.pack("<I", 8) + s("qwen3")
    valid = build([arch], [tensor("a", (4, 2), 0, 0)], b"\1" * 32)
    return {
        "gguf/empty.gguf": b"",
        "gguf/bad-magic.gguf": b"GGML" + valid[4:],
        "gguf/truncated.gguf": valid[:40],
        "gguf/version-7.gguf": build([], [], b"", version=7),
        "gguf/huge-kv-count.gguf": build([], [], b"\0" * 64, n_kv=2**62),
        "gguf/huge-string.gguf": build([s("k") + struct.pack("<IQ", 8, 2**40)], [], b"\0" * 64),
        "gguf/unknown-value-type.gguf": build([s("k") + struct.pack("<I", 99)], [], b"\0" * 64),
        "gguf/tensor-past-end.gguf": build([arch], [tensor("t", (1024, 1024), 0, 0)], b"\0" * 64),
        "gguf/bad-alignment.gguf": build([s("general.alignment") + struct.pack("<II", 4, 3)], [], b"\0" * 64),
    }


# ---- archives (what `edge unpack` reads) -----------------------------------------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def archives() -> dict[str, bytes]:
    manifest = ("b/manifest.json", _with(lambda m: None))
    good = _tar([_file(*manifest)])
    return {
        "archives/not-a-tar.tar": b"hello, not an archive\n" * 4,
        "archives/truncated.tar.gz": gzip.compress(good, mtime=0)[:60],
        "archives/parent-path.tar": _tar([_file(*manifest), _file("b/../../evil.txt", b"x")]),
        "archives/absolute-path.tar": _tar([_file(*manifest), _file("/tmp/evil.txt", b"x")]),
        "archives/symlink-out.tar": _tar([_file(*manifest), _special("b/passwd", tarfile.SYMTYPE, "/etc/passwd")]),
        "archives/hardlink-out.tar": _tar([_file(*manifest), _special("b/passwd", tarfile.LNKTYPE, "/etc/passwd")]),
        "archives/device.tar": _tar([_file(*manifest), _special("b/dev", tarfile.CHRTYPE)]),
        "archives/no-manifest.tar": _tar([_file("b/readme.txt", b"hello")]),
        "archives/two-tops.tar": _tar([_file(*manifest), _file("c/other.txt", b"x")]),
    }


# ---- JSONL evaluation items and HTTP bodies --------------------------------------------------


def jsonl() -> dict[str, bytes]:
    lines = [
        b"{not json",
        b"{\"id\": \"a\", \"question\": \"\xff\xfe broken utf-8\", \"image\": \"x.png\", \"answer\": \"A\"}",
        b"[1, 2, 3]",
        b"{\"id\": \"b\", \"image\": \"x.png\", \"answer\": \"A\"}",
        b"{\"id\": \"c\", \"question\": \"\\ud800?\", \"image\": \"x.png\", \"answer\": \"A\"}",
        b"{\"id\": \"d\", \"question\": \"q?\", \"options\": \"A B\", \"image\": \"x.png\", \"answer\": \"A\"}",
        b"[" * 5000 + b"]" * 5000,
    ]
    return {"jsonl/every-line-bad.jsonl": b"\n".join(lines) + b"\n",
            "jsonl/empty.jsonl": b""}


def http() -> dict[str, bytes]:
    """Request bodies for `edge serve`; each is well formed except for its one fault."""
    png = "data:image/png;base64," + base64.b64encode(_encoded("PNG", (8, 8))).decode()

    def user(text: str, url: str = png) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": text}]}]

    def body(**kw) -> bytes:
        return json.dumps({"model": "extract-think", **kw}).encode()

    return {
        "http/a-list.json": b"[1, 2]",
        "http/not-json.json": b"{\"messages\": [",
        "http/no-messages.json": body(),
        "http/messages-not-a-list.json": body(messages="hi"),
        "http/content-a-number.json": body(messages=[{"role": "user", "content": 5}]),
        "http/bad-role.json": body(messages=[{"role": "wizard", "content": "hi"}]),
        "http/no-image.json": body(messages=[{"role": "user", "content": "How many?"}]),
        "http/bad-base64.json": body(messages=user("What is it?", "data:image/png;base64,@@@")),
        "http/not-an-image.json": body(messages=user("What is it?", "data:image/png;base64,aGVsbG8=")),
        "http/remote-image.json": body(messages=user("What is it?", "http://127.0.0.1:1/x.png")),
        "http/max-tokens-huge.json": body(messages=user("How many?"), max_tokens=10**12),
        "http/max-tokens-string.json": body(messages=user("How many?"), max_tokens="ten"),
        "http/lone-surrogate.json": body(messages=user("\udc00 how many?")),
        "http/temperature-nan.json": body(messages=user("How many?"), temperature=float("nan")),
    }


# ---- the table -------------------------------------------------------------------------------

KINDS = {"images": "image", "bundles": "bundle", "gguf": "gguf", "archives": "archive", "jsonl": "jsonl", "http": "http"}
EXPECTED: dict[str, tuple[int, str]] = {  # path -> (exit code or HTTP status, phrase of the error)
    "images/empty.png": (4, r"empty\.png: the image is empty \(0 bytes\)"),
    "images/text.png": (4, r"text\.png: not a readable image"),
    "images/gzip-named.png": (4, r"gzip-named\.png: not a readable image"),
    "images/truncated.png": (4, r"truncated\.png: truncated or corrupt PNG"),
    "images/truncated.jpg": (4, r"truncated\.jpg: not a readable image"),
    "images/zero-width.png": (4, r"zero-width\.png: not a readable image"),
    "images/strip-1x40000.png": (4, r"1x40000 has an aspect ratio of 40,000:1, over the 20:1 limit"),
    "images/huge-declared.png": (4, r"more pixels than the [\d,]+-pixel cap"),
    "images/huge-declared-16bit.png": (4, r"more pixels than the [\d,]+-pixel cap"),
    "images/palette-bomb.png": (4, r"more pixels than the [\d,]+-pixel cap"),
    "images/huge-declared.jpg": (4, r"more pixels than the [\d,]+-pixel cap"),
    "bundles/not-json/manifest.json": (3, r"manifest\.json: not valid JSON"),
    "bundles/not-utf8/manifest.json": (3, r"manifest\.json: not valid JSON \(not UTF-8"),
    "bundles/a-list/manifest.json": (3, r"manifest\.json: not an extract-think-bundle manifest"),
    "bundles/other-format/manifest.json": (3, r"manifest\.json: not an extract-think-bundle manifest"),
    "bundles/deeply-nested/manifest.json": (3, r"manifest\.json: JSON nested deeper than \d+ levels"),
    "bundles/huge-number/manifest.json": (3, r"manifest\.json: not valid JSON \(Exceeds the limit"),
    "bundles/wrong-type/manifest.json": (3, r"format_version '1' is not supported"),
    "bundles/unknown-key/manifest.json": (3, r"unknown key\(s\) extra_field"),
    "bundles/path-traversal/manifest.json": (3, r"unsafe path: '\.\./\.\./\.\./etc/passwd'"),
    "bundles/negative-size/manifest.json": (3, r"size -5 is not a plausible file size"),
    "bundles/image-size-huge/manifest.json": (3, r"image\.size 1000000 is outside 1\.\.\d+"),
    "bundles/image-size-zero/manifest.json": (3, r"image\.size 0 is outside 1\.\.\d+"),
    "bundles/image-std-zero/manifest.json": (3, r"image\.std\[1\] 0\.0 is outside"),
    "bundles/files-missing/manifest.json": (3, r"missing file examples/\d+\.(png|jpg)"),
    "gguf/empty.gguf": (3, r"empty\.gguf: not a GGUF file"),
    "gguf/bad-magic.gguf": (3, r"bad-magic\.gguf: not a GGUF file"),
    "gguf/truncated.gguf": (3, r"truncated\.gguf: llama\.cpp could not load this GGUF \(.*exceeds remaining file size"),
    "gguf/version-7.gguf": (3, r"could not load this GGUF \(.*version 7"),
    "gguf/huge-kv-count.gguf": (3, r"could not load this GGUF \(.*number of key value pairs"),
    "gguf/huge-string.gguf": (3, r"could not load this GGUF \(.*string length 1099511627776 exceeds"),
    "gguf/unknown-value-type.gguf": (3, r"could not load this GGUF \(.*invalid GGUF type 99"),
    "gguf/tensor-past-end.gguf": (3, r"could not load this GGUF \(.*not within the file bounds"),
    "gguf/bad-alignment.gguf": (3, r"could not load this GGUF \(.*alignment 3 is not a power of 2"),
    "archives/not-a-tar.tar": (3, r"not-a-tar\.tar: not a readable tar archive"),
    "archives/truncated.tar.gz": (3, r"truncated\.tar\.gz: not a readable tar archive"),
    "archives/parent-path.tar": (3, r"unsafe path: '\.\./\.\./evil\.txt'"),
    "archives/absolute-path.tar": (3, r"member '/tmp/evil\.txt' is outside the archive's folder"),
    "archives/two-tops.tar": (3, r"member 'c/other\.txt' is outside the archive's folder"),
    "archives/symlink-out.tar": (3, r"member 'b/passwd' is a link: refused"),
    "archives/hardlink-out.tar": (3, r"member 'b/passwd' is a link: refused"),
    "archives/device.tar": (3, r"member 'b/dev' is a special file: refused"),
    "archives/no-manifest.tar": (3, r"not an edge pack archive: it must start with manifest\.json"),
    "jsonl/empty.jsonl": (2, r"no usable items \(the file is empty\)"),
    "jsonl/every-line-bad.jsonl": (2, r"no usable items \(6 malformed, 1 missing image\)"),
    "http/a-list.json": (400, r"must be a JSON object"),
    "http/not-json.json": (400, r"not valid JSON"),
    "http/no-messages.json": (400, r"messages must be a non-empty list"),
    "http/messages-not-a-list.json": (400, r"messages must be a non-empty list"),
    "http/content-a-number.json": (400, r"messages\[0\]\.content must be a string or a list"),
    "http/bad-role.json": (400, r"messages\[0\]\.role must be one of"),
    "http/no-image.json": (400, r"no image: add an image_url part"),
    "http/bad-base64.json": (400, r"not valid base64"),
    "http/not-an-image.json": (400, r"not a readable image"),
    "http/remote-image.json": (400, r"does not fetch remote images"),
    "http/max-tokens-huge.json": (400, r"max_tokens must be between 0 and"),
    "http/max-tokens-string.json": (400, r"max_tokens must be an integer"),
    "http/lone-surrogate.json": (400, r"the question is not valid text: .*lone surrogate"),
    "http/temperature-nan.json": (400, r"temperature must be a number"),
}


def files() -> dict[str, bytes]:
    return {**images(), **bundles(), **ggufs(), **archives(), **jsonl(), **http()}


def cases() -> list[Case]:
    return [Case(rel, KINDS[rel.split("/")[0]], *EXPECTED[rel]) for rel in sorted(EXPECTED)]


def write(folder: Path = CORPUS) -> None:
    for rel, data in files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / rel, data)


if __name__ == "__main__":
    write()
