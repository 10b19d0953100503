"""Helpers for the training tests: recipes over tiny models, reading logs."""

from __future__ import annotations

import json
from pathlib import Path


def synthetic(path: Path, style: str, **kw) -> dict:
    return {"kind": "synthetic", "path": str(path), "style": style, **kw}


STAGE_STYLES = {
    "vision": [("cells", {})],
    "align": [("caption", {})],
    "instruct": [("direct", {})],
    "caption": [("caption", {})],
    "extract": [("extraction", {})],
    "reasoner": [("trace", {"caption_share": 0.5}), ("hint", {"weight": 0.5})],
}


def tiny_recipe_data(out: Path, data: Path, tokenizer: Path, stages: dict[str, dict] | None = None,
                     **stage_kw) -> dict:
    """A recipe over tiny models; `stages` maps name -> extra fields (kind defaults to name)."""
    stages = stages if stages is not None else {k: {} for k in STAGE_STYLES}
    body = {}
    for name, extra in stages.items():
        kind = extra.get("kind", name)
        st = {"kind": kind, "data": [synthetic(data, s, **kw) for s, kw in STAGE_STYLES[kind]],
              "steps": 8, "micro_batch_size": 4, "max_length": 384, "precision": "fp32",
              "optim": {"lr": 3e-3, "warmup_steps": 2}, **stage_kw}
        st.update(extra)
        body[name] = st
    return {"name": "tiny", "output_dir": str(out), "tokenizer": {"source": str(tokenizer)}, "threads": 1,
            "perception": {"vision": "siglip-tiny", "text": "qwen3-tiny"}, "reasoner": {"text": "qwen3-tiny"},
            "stages": body}


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def losses(stage_dir: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (stage_dir / "log.jsonl").read_text().splitlines()]
