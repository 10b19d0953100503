"""Load the two modules and their tokenizer from a local folder or a hub id.

A folder must hold config.json and safetensors weights (nothing is unpickled:
`use_safetensors=True`). A hub id goes through transformers' normal download path; with
no network that fails, and the error says so instead of a long traceback.

transformers is imported inside the loaders: it takes seconds to import, and export and
the benchmarks import this module for its checks before they load anything.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from runtime.errors import ConfigError

log = logging.getLogger(__name__)


def _check_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: no config.json (not a saved checkpoint)")
    if not any(path.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in path.iterdir())[:6])
        raise ConfigError(f"{path}: no .safetensors weights (found: {found or 'nothing'}); "
                          "pickled .bin checkpoints are refused")


def from_pretrained(cls: Any, name_or_path: str | Path, **kw: Any) -> Any:
    path = Path(name_or_path)
    local = path.exists()
    if local:
        if not path.is_dir():
            raise ConfigError(f"{path}: expected a checkpoint folder")
        _check_folder(path)
    try:
        return cls.from_pretrained(str(name_or_path), use_safetensors=True, local_files_only=local, **kw)
    except OSError as exc:
        where = "folder" if local else "hub id (is the network reachable, or is it cached?)"
        raise ConfigError(f"cannot load {name_or_path} as a {where}: {str(exc).splitlines()[0]}") from None
    except SafetensorError as exc:
        raise ConfigError(f"{name_or_path}: corrupt or truncated safetensors weights ({exc})") from None
    except RuntimeError as exc:
        # transformers reports shape mismatches between config and weights this way
        if "mismatched_sizes" in str(exc) or "size mismatch" in str(exc):
            raise ConfigError(f"{name_or_path}: weights do not match its config.json: {str(exc).splitlines()[0]}") from None
        raise


def load_perception(name_or_path: str | Path, *, dtype: Any = None):
    """A LLaVA-style perception model (our format). Paper-layout checkpoints: see
    `export.convert_llava_ov`."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = _load_config(name_or_path)
    if not isinstance(config, LlavaConfig):
        raise ConfigError(f"{name_or_path}: model_type {config.model_type!r} is not a llava perception model")
    if config.text_config.model_type != "qwen3":
        raise ConfigError(f"{name_or_path}: text model {config.text_config.model_type!r} is not qwen3")
    if config.vision_config.model_type not in ("siglip_vision_model", "siglip"):
        raise ConfigError(f"{name_or_path}: vision tower {config.vision_config.model_type!r} is not SigLIP")
    return from_pretrained(LlavaForConditionalGeneration, name_or_path, dtype=dtype).eval()


def load_reasoner(name_or_path: str | Path, *, dtype: Any = None):
    from transformers import Qwen3ForCausalLM

    config = _load_config(name_or_path)
    if config.model_type != "qwen3":
        raise ConfigError(f"{name_or_path}: model_type {config.model_type!r} is not qwen3")
    return from_pretrained(Qwen3ForCausalLM, name_or_path, dtype=dtype).eval()


def _load_config(name_or_path: str | Path):
    from transformers import AutoConfig

    path = Path(name_or_path)
    if path.exists():
        _check_folder(path)
    try:
        return AutoConfig.from_pretrained(str(name_or_path), local_files_only=path.exists())
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read the config of {name_or_path}: {str(exc).splitlines()[0]}") from None
