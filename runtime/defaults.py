"""Where the shipped default bundle lives: `<edge package>/assets/default_bundle`.

Found through the import system without importing `edge` (whose CLI modules are not
needed by library users), so this works from a wheel, an editable install or a checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from runtime.errors import BundleError

DEFAULT_BUNDLE_DIR = ("assets", "default_bundle")


def _edge_package_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("edge")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_bundle_path(*, must_exist: bool = True) -> Path:
    """The shipped default bundle's directory; `BundleError` if it is not installed."""
    pkg = _edge_package_dir()
    if pkg is None:
        raise BundleError("the 'edge' package is not installed, so there is no default bundle: pass a bundle")
    path = pkg.joinpath(*DEFAULT_BUNDLE_DIR)
    if must_exist and not (path / "manifest.json").is_file():
        raise BundleError(
            f"no default bundle is installed at {path}; pass one with --bundle "
            f"(export one with `edge export`, see the README)"
        )
    return path
