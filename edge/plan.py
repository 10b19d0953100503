"""From a device profile and a bundle to the concrete settings a run uses.

Which profile: `--profile NAME|FILE` when given, else the `profile.json` a packed bundle
carries (it was packed for this device), else the one detection picks. The effective
threads and memory cap are the profile's, bounded by what the machine has; the token
budgets are the bundle's defaults capped by the profile's (a Pi profile shortens them, it
never lengthens what the bundle's models were made for).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from edge.device import DeviceInfo, choose_profile, detect
from edge.profiles import PROFILE_FILE, DeviceProfile, load_profile, load_profile_file
from edge.selection import Selection, installed_backends, select
from runtime.bundle import read_manifest
from runtime.config_io import to_dict
from runtime.manifest import Budgets
from runtime.pipeline import ExtractThink


@dataclass(frozen=True)
class ProfileResolution:
    profile: DeviceProfile
    source: str  # how it was chosen, for humans


def resolve_profile(
    profile: str | os.PathLike[str] | None,
    bundle: str | os.PathLike[str] | None = None,
    info: DeviceInfo | None = None,
) -> ProfileResolution:
    if profile is not None:
        return ProfileResolution(load_profile(profile), f"--profile {profile}")
    if bundle is not None and (Path(bundle) / PROFILE_FILE).is_file():
        p = load_profile_file(Path(bundle) / PROFILE_FILE)
        return ProfileResolution(p, f"the bundle's {PROFILE_FILE} (packed for {p.name})")
    choice = choose_profile(info or detect())
    return ProfileResolution(choice.profile, f"detected: {choice.reason}")


@dataclass(frozen=True)
class RunPlan:
    """Everything a command needs to load the pipeline the way the profile says."""

    profile: DeviceProfile
    profile_source: str
    selection: Selection
    threads: int
    max_memory_mb: int | None  # None: the planner uses what the machine has available
    context_length: int
    gpu_layers: int
    residency: str
    budgets: Budgets
    thinking: bool
    deadline_s: float | None

    def to_dict(self) -> dict:
        return {
            "profile": self.profile.name,
            "profile_source": self.profile_source,
            "selection": self.selection.to_dict(),
            "threads": self.threads,
            "max_memory_mb": self.max_memory_mb,
            "context_length": self.context_length,
            "gpu_layers": self.gpu_layers,
            "residency": self.residency,
            "budgets": to_dict(self.budgets),
            "thinking": self.thinking,
            "deadline_s": self.deadline_s,
        }


def effective_threads(profile: DeviceProfile, info: DeviceInfo) -> int:
    cores = max(1, min(info.physical_cores, info.usable_cores))
    return max(1, min(profile.threads or cores, info.usable_cores))


def make_plan(
    bundle: str | os.PathLike[str],
    resolution: ProfileResolution,
    info: DeviceInfo | None = None,
    *,
    backend: str | None = None,
    check_installed: bool = True,
) -> RunPlan:
    """Choose backend and quantization for `bundle` and bound the profile by the machine."""
    info = info or detect()
    profile = resolution.profile
    manifest = read_manifest(bundle)
    selection = select(profile, manifest, backend=backend,
                       installed=installed_backends() if check_installed else None)
    budgets = Budgets(**{f.name: min(getattr(profile.budgets, f.name), getattr(manifest.budgets, f.name))
                         for f in dataclasses.fields(Budgets)})
    cap = profile.memory_cap_mb
    if cap is not None and info.memory_total_mb:
        cap = min(cap, info.memory_total_mb)
    gpu_layers = profile.gpu_layers if (info.cuda.available and selection.backend == "llamacpp") else 0
    return RunPlan(
        profile=profile,
        profile_source=resolution.source,
        selection=selection,
        threads=effective_threads(profile, info),
        max_memory_mb=cap,
        context_length=profile.context_length,
        gpu_layers=gpu_layers,
        residency=profile.residency,
        budgets=budgets,
        thinking=profile.thinking,
        deadline_s=profile.deadline_s,
    )


def load_pipeline(bundle: str | os.PathLike[str], plan: RunPlan, *, verify: str = "full",
                  prefix_cache_mb: int | None = None, lookup: int = 0,
                  prompt_cache: Path | None = None, kv_cache_type: str = "f16") -> ExtractThink:
    """`ExtractThink.load` with the plan's backend, quantizations, threads, memory and context
    (`prefix_cache_mb`: None keeps the runtime's default; `lookup`: the requests' default
    prompt-lookup draft length, 0 = off; `prompt_cache`: a folder for the reasoner's
    prompt-start states; `kv_cache_type`: f16, f32 or q8_0)."""
    extra = {} if prefix_cache_mb is None else {"prefix_cache_mb": prefix_cache_mb}
    return ExtractThink.load(
        bundle,
        backend=plan.selection.backend,
        quant=dict(plan.selection.quants),
        threads=plan.threads,
        max_memory=plan.max_memory_mb << 20 if plan.max_memory_mb else None,
        context_length=plan.context_length,
        residency=plan.residency,
        gpu_layers=plan.gpu_layers,
        cache_mb=plan.profile.image.cache_mb,
        verify=verify,
        lookup=lookup,
        prompt_cache=prompt_cache,
        kv_cache_type=kv_cache_type,
        **extra,
    )


def stream_kwargs(plan: RunPlan) -> dict:
    """The per-request defaults of the plan, as `ExtractThink.stream` arguments."""
    b = plan.budgets
    return {
        "thinking": plan.thinking,
        "hint_budget": b.hint,
        "extraction_budget": b.extraction,
        "thinking_budget": b.thinking,
        "answer_budget": b.answer if plan.thinking else b.non_thinking_answer,
        "deadline_s": plan.deadline_s,
    }
