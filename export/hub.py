"""Hugging Face hub ids -> local checkpoint folders, through huggingface_hub's own cache.

    r = resolve_hub("markendo/llava-extract-qwen3-0.6B@main", progress=cb)
    r.path    # <HF_HUB_CACHE>/models--markendo--llava-extract-qwen3-0.6B/snapshots/<commit>
    r.commit  # the 40-hex commit the files came from (recorded in the bundle's manifest)

The standard cache, token (HF_TOKEN or `hf auth login`) and HF_HUB_OFFLINE apply. The
environment is read at call time and passed to huggingface_hub explicitly, because
huggingface_hub reads HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE / HF_ENDPOINT only once, when
it is first imported. Every failure becomes one `HubError` line. Pickled weights
(*.bin, *.pt, *.pth) are never fetched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from runtime.errors import ConfigError
from runtime.progress import Progress

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
# What a model folder needs (config, safetensors weights, tokenizer, templates).
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja")


class HubError(ConfigError):
    """A hub id could not be resolved (missing, gated, offline...); the message is one line."""


@dataclass(frozen=True)
class HubSnapshot:
    repo_id: str
    revision: str  # as asked ("main" when not given)
    commit: str  # the resolved 40-hex commit
    path: Path  # the snapshot folder in the cache


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """'org/name@rev' -> ('org/name', 'rev'); None when `spec` is an existing local path (a
    local folder always wins) or is not shaped like a hub id."""
    if Path(spec).exists():
        return None
    m = HUB_ID.match(spec)
    if not m or ".." in spec:
        return None
    return m.group("repo"), m.group("rev")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_settings() -> dict[str, Any]:
    """The hub settings from the environment now: cache folder, offline flag, endpoint."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return {
        "cache_dir": os.path.expanduser(os.path.expandvars(cache)),
        "offline": _truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE")),
        "endpoint": env.get("HF_ENDPOINT") or None,
    }


def _progress_tqdm(progress: Progress) -> type:
    """A tqdm class for snapshot_download that reports the byte bar as progress("download", f).

    The library's bars stay silent (the CLI draws its own). Bar totals grow as files start,
    so the fraction reported is a running maximum.
    """

    class ProgressTqdm(tqdm):
        best = 0.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._bytes = kwargs.get("unit") == "B" and "transfer" not in str(kwargs.get("name", ""))
            self._count = 0

        def update(self, n: float | None = 1) -> bool | None:
            self._count += n or 0  # a disabled tqdm does not count
            if self._bytes and self.total:
                frac = min(1.0, self._count / self.total)
                if frac > ProgressTqdm.best:
                    ProgressTqdm.best = frac
                    progress("download", frac)
            return None

    return ProgressTqdm


def resolve_hub(spec: str, *, progress: Progress | None = None,
                allow_patterns: tuple[str, ...] = ALLOW_PATTERNS) -> HubSnapshot:
    """Download (or find in the cache) the snapshot `spec` names; raises `HubError`."""
    parsed = parse_hub_id(spec)
    if parsed is None:
        raise HubError(f"{spec!r} is neither a folder nor a hub id (org/name[@revision])")
    repo_id, rev = parsed
    revision = rev or "main"
    s = hub_settings()
    try:
        from huggingface_hub import errors as hub_errors  # optional dependency of transformers
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HubError(f"{spec}: hub ids need huggingface_hub (pip install huggingface_hub)") from None

    kwargs: dict[str, Any] = dict(repo_id=repo_id, revision=revision, cache_dir=s["cache_dir"],
                                  local_files_only=s["offline"], allow_patterns=list(allow_patterns))
    if s["endpoint"]:
        kwargs["endpoint"] = s["endpoint"]
    if progress is not None:
        kwargs["tqdm_class"] = _progress_tqdm(progress)
    where = f"{repo_id}@{revision}"
    try:
        path = Path(snapshot_download(**kwargs))
    except hub_errors.GatedRepoError:  # before RepositoryNotFoundError: it is a subclass
        raise HubError(f"{repo_id} is gated: accept its terms on the hub and log in "
                       "(`hf auth login` or HF_TOKEN)") from None
    except hub_errors.RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such repository on the hub (or it is private: log in "
                       "with `hf auth login` or set HF_TOKEN)") from None
    except hub_errors.RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r}") from None
    except hub_errors.LocalEntryNotFoundError as exc:
        cause = exc.__cause__
        if isinstance(exc, getattr(hub_errors, "IncompleteSnapshotError", ())):
            raise HubError(f"{where}: the cached copy is incomplete and the hub cannot be reached") from None
        if s["offline"] or isinstance(cause, hub_errors.OfflineModeIsEnabled):
            raise HubError(f"{where} is not in the hub cache ({s['cache_dir']}) and HF_HUB_OFFLINE is set") from None
        raise HubError(f"cannot reach the hub for {where} ({type(cause).__name__ if cause else 'no network'}) "
                       f"and it is not in the cache ({s['cache_dir']})") from None
    except hub_errors.HFValidationError as exc:
        raise HubError(f"{spec!r} is not a valid hub id ({str(exc).splitlines()[0]})") from None
    except hub_errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise HubError(f"the hub refused {where} (HTTP {status})") from None
    except OSError as exc:  # disk full, permissions on the cache folder
        raise HubError(f"{where}: cannot write the hub cache ({exc.strerror or exc})") from None
    commit = path.name
    if path.parent.name != "snapshots" or not COMMIT.match(commit):
        raise HubError(f"{where}: unexpected hub cache layout at {path}")
    if not (path / "config.json").is_file():
        raise HubError(f"{where}: the snapshot has no config.json (not a transformers model repository?)")
    return HubSnapshot(repo_id, revision, commit, path)
