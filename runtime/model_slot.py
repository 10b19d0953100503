"""The models a pipeline runs, and which of them are loaded (residency).

A `ModelSlot` is one role's model (perception or reasoner): what to load, its tokenizer
and control tokens, and, while loaded, the backend objects. `ModelSlots` holds them and
makes a slot loaded when a stage needs it; under "sequential" residency (the memory
planner's choice when both models do not fit together) it frees the other model first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import (
    artifact_id,
    backend_module,
    choose_artifact,
    load_model,
    separate_vision,
    vision_artifact,
)
from runtime.backends.base import BackendOptions, LanguageModel, TokenizerLike, VisionEncoder
from runtime.bundle import Bundle
from runtime.control_tokens import ControlTokens, control_tokens
from runtime.errors import BundleError, ConfigError
from runtime.generation import Session
from runtime.manifest import TEXT_PART, Artifact, Budgets, ModelEntry
from runtime.memory import KV_VALUE_BYTES, ModelNeed, model_need, release_free_heap
from runtime.nowait import nowait_token_ids
from runtime.tokenizer import BundleTokenizer

log = logging.getLogger(__name__)


class ModelSlot:
    """One role's model: what to load, and (while loaded) the loaded objects."""

    def __init__(self, role: str, backend: str, artifact: Artifact, options: BackendOptions,
                 tok: TokenizerLike, entry: ModelEntry | None, bundle: Bundle | None, gguf_path: Path | None,
                 art_id: str, nowait_keywords: Sequence[str]) -> None:
        self.role, self.backend, self.artifact, self.options = role, backend, artifact, options
        self.tok, self.entry, self.bundle, self.gguf_path = tok, entry, bundle, gguf_path
        self.art_id = art_id
        self.control: ControlTokens = control_tokens(tok)
        self.nowait_keywords = tuple(nowait_keywords)
        self.lm: LanguageModel | None = None
        self.vision: VisionEncoder | None = None
        self.session: Session | None = None
        self._nowait: np.ndarray | None = None

    @property
    def loaded(self) -> bool:
        return self.lm is not None

    @property
    def label(self) -> str:
        if self.gguf_path is not None:
            return f"llamacpp gguf {self.gguf_path.name}"
        return f"{self.backend} {self.artifact.format}/{self.artifact.quant}"

    @property
    def weight_bytes(self) -> int:
        """Bytes of the model's files (what decoding streams per token)."""
        if self.gguf_path is not None:
            return self.gguf_path.stat().st_size
        return sum(self.bundle.manifest.files[rel].size for rel in self.artifact.files.values())

    @property
    def speed_key(self) -> str:
        """What its speed depends on besides the machine: weights, backend, threads, offload."""
        return (f"{self.art_id}|{self.backend}|threads={self.options.threads}|gpu_layers={self.options.gpu_layers}"
                f"|kv={self.options.kv_cache_type}")

    def nowait_ids(self) -> np.ndarray:
        if self._nowait is None:
            self._nowait = nowait_token_ids(self.tok, self.nowait_keywords)
        return self._nowait

    def load(self) -> float:
        """Load the model if it is not; the seconds it took."""
        if self.loaded:
            return 0.0
        t0 = time.perf_counter()
        if self.gguf_path is not None:
            self.lm, self.vision = backend_module("llamacpp").load_gguf(self.gguf_path, None, self.options)
        else:
            self.lm, self.vision = load_model(self.bundle, self.role, self.backend, self.artifact, self.options)
        self.session = Session(self.lm)
        release_free_heap()  # what loading used on the way (read buffers, parsed metadata)
        dt = time.perf_counter() - t0
        log.info("loaded the %s model (%s) in %.2f s", self.role, self.label, dt)
        return dt

    def unload(self) -> None:
        if self.vision is not None:
            self.vision.close()
        if self.lm is not None:
            self.lm.close()
        self.lm = self.vision = self.session = None
        release_free_heap()

    def close(self) -> None:
        """Unload, and free the tokenizer when it holds native memory (a GGUF vocabulary)."""
        self.unload()
        close = getattr(self.tok, "close", None)
        if close is not None:
            close()


class ModelSlots(Mapping[str, ModelSlot]):
    """The pipeline's models by role, loaded as the residency allows."""

    def __init__(self, slots: Mapping[str, ModelSlot], residency: str) -> None:
        self._slots = dict(slots)
        self.residency = residency

    def __getitem__(self, role: str) -> ModelSlot:
        return self._slots[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def load_initial(self) -> None:
        """Resident: load both now. Sequential: the reasoner (the first stage of a request),
        so a model that cannot load fails at load time, not at the first request."""
        if self.residency == "resident":
            for slot in self._slots.values():
                slot.load()
        elif "reasoner" in self._slots:
            self._slots["reasoner"].load()

    def acquire(self, slot: ModelSlot) -> float:
        """Make `slot` loaded (under sequential residency freeing the other model first);
        the seconds the swap took. Freeing counts with loading: releasing the 1.7B
        reasoner takes ~80 ms, which was otherwise charged to the next stage's own work
        (the vision stage's seconds on a restored image prefix)."""
        if slot.loaded:
            return 0.0
        t0 = time.perf_counter()
        if self.residency == "sequential":
            for other in self._slots.values():
                if other is not slot and other.loaded:
                    other.unload()
        return (time.perf_counter() - t0) + slot.load()

    def loaded_roles(self) -> tuple[str, ...]:
        return tuple(role for role, slot in self._slots.items() if slot.loaded)

    def close(self) -> None:
        for slot in self._slots.values():
            slot.close()


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


PROMPT_ALLOWANCE = 768  # the reasoner's prompt text besides the extraction, when not known
TEMPLATE_ALLOWANCE = 128  # its chat template, instruction and hint lines around a known question


def context_need(role: str, entry: ModelEntry, budgets: Budgets, image_tokens: int | None = None,
                 question_tokens: int | None = None) -> int:
    """The positions one request with `budgets` can fill in the role's model: its prompt
    text (and image) plus what it generates. `image_tokens`: the most image tokens a
    request can take (the image layout's; default the vision shape's). `question_tokens`:
    the tokens of the question and its options, when the requests are known (a benchmark);
    else the reasoner allows 768 for its prompt text."""
    if role == "perception":
        tpi = entry.vision.tokens_per_image if entry.vision is not None else 0
        tpi = tpi if image_tokens is None else image_tokens
        return tpi + 256 + max(budgets.extraction, budgets.non_thinking_answer) + 64
    text = PROMPT_ALLOWANCE if question_tokens is None else TEMPLATE_ALLOWANCE + question_tokens + budgets.hint
    return text + budgets.extraction + budgets.thinking + budgets.answer + 64


def default_context(role: str, entry: ModelEntry, budgets: Budgets, image_tokens: int | None = None) -> int:
    """Enough context for the default budgets (at least 4096), within the model's."""
    need = context_need(role, entry, budgets, image_tokens)
    return min(max(4096, _round_up(need, 1024)), entry.text.context_length)


def bundle_tokenizer(bundle: Bundle, entry: ModelEntry) -> TokenizerLike:
    """The entry's tokenizer: a tokenizer.json, or (composed bundles) the vocabulary of the
    GGUF model it names, read by llama.cpp."""
    path = bundle.path(entry.tokenizer)
    if entry.tokenizer.endswith(".gguf"):
        return backend_module("llamacpp").GGUFTokenizer(path)
    tok = BundleTokenizer(path)
    # Parsing Qwen3's tokenizer.json leaves 123 MiB of freed heap that glibc keeps; the
    # first model would be loaded on top of it (the sequential peak at paper scale)
    release_free_heap()
    return tok


def bundle_slot(bundle: Bundle, role: str, backend: str, quant: str | None, options: BackendOptions,
                context_length: int | None, kv_cache_type: str, nowait_keywords: Sequence[str],
                tokenizers: dict[str, Any], image_tokens: int | None = None,
                ) -> tuple[ModelSlot, ModelNeed, list[ModelNeed]]:
    """`role`'s slot from the bundle, its memory need, and the needs of the same-format
    alternatives (other quantizations the planner may suggest). `tokenizers` is shared
    between roles that use the same tokenizer file."""
    entry = bundle.model(role)
    name, art = choose_artifact(bundle, role, backend, quant)
    ctx = min(context_length or default_context(role, entry, bundle.manifest.budgets, image_tokens),
              entry.text.context_length)
    opts = replace(options, context_length=ctx)
    if entry.tokenizer not in tokenizers:
        tokenizers[entry.tokenizer] = bundle_tokenizer(bundle, entry)
    sizes = {rel: fe.size for rel, fe in bundle.manifest.files.items()}
    if kv_cache_type not in KV_VALUE_BYTES:
        raise ConfigError(f"kv_cache_type must be one of {', '.join(KV_VALUE_BYTES)}, not {kv_cache_type!r}")
    if kv_cache_type == "q8_0" and art.format != "gguf":
        raise ConfigError(f"a q8_0 KV cache is llama.cpp's: the {role} model runs on {name} "
                          "(whose cache is float32)")
    kv_bytes = KV_VALUE_BYTES[kv_cache_type]

    vart = vision_artifact(bundle, role, options.vision_backend) if separate_vision(bundle, role, name, options) \
        else None

    def need(a: Artifact) -> ModelNeed:
        if vart is not None and "mmproj" in a.files:  # the vision graph loads instead of the mmproj
            files = {part: rel for part, rel in a.files.items() if part != "mmproj"}
            n = model_need(role, replace(a, files=files), sizes, entry.text, ctx, kv_bytes)
            graph = model_need(role, Artifact(format=vart.format, quant=vart.quant,
                                              files={"vision": vart.files["vision"]}), sizes, None, 0, 0)
            return replace(n, weights_bytes=n.weights_bytes + graph.weights_bytes)
        return model_need(role, a, sizes, entry.text, ctx, kv_bytes if a.format == "gguf" else 4)  # ONNX: fp32 cache

    slot = ModelSlot(role, name, art, opts, tokenizers[entry.tokenizer], entry, bundle, None,
                     artifact_id(bundle, role, art, vart), nowait_keywords)
    return slot, need(art), [need(a) for a in entry.artifacts
                             if a.format == art.format and TEXT_PART[a.format] in a.files]


def stock_reasoner_slot(path: Path, options: BackendOptions, context_length: int | None,
                        nowait_keywords: Sequence[str]) -> tuple[ModelSlot, ModelNeed]:
    """A stock GGUF chat model (no bundle) as the reasoner."""
    if not path.is_file():
        raise BundleError(f"{path}: no such GGUF file")
    module = backend_module("llamacpp")
    tok = module.GGUFTokenizer(path)
    ctx = context_length or module.DEFAULT_CONTEXT
    opts = replace(options, context_length=context_length)
    art = Artifact(format="gguf", quant="stock", files={"model": path.name})
    need = model_need("reasoner", art, {path.name: path.stat().st_size}, None, ctx, 2)
    slot = ModelSlot("reasoner", "llamacpp", art, opts, tok, None, None, path,
                     f"gguf:{path.resolve()}:{path.stat().st_size}", nowait_keywords)
    return slot, need


def build_slots(bundle: Bundle, *, backend: str, quant: str | Mapping[str, str] | None, options: BackendOptions,
                context_length: int | Mapping[str, int] | None, kv_cache_type: str, nowait_keywords: Sequence[str],
                reasoner_gguf: Path | None = None, image_tokens: int | None = None,
                ) -> tuple[dict[str, ModelSlot], dict[str, ModelNeed], dict[str, list[ModelNeed]]]:
    """The bundle's models as slots (a stock GGUF as the reasoner when given), with the
    memory each needs and the alternatives the planner may suggest. `image_tokens`: the
    most image tokens a perception request can take (sizes its context and KV memory);
    `context_length`: one for both roles, or per role (a role left out: its default)."""
    roles = [r for r in ("perception", "reasoner") if r in bundle.manifest.models]
    if reasoner_gguf is not None and "reasoner" not in roles:
        roles.append("reasoner")
    if not roles:
        raise BundleError(f"bundle {bundle.manifest.name!r} has no models")
    slots: dict[str, ModelSlot] = {}
    needs: dict[str, ModelNeed] = {}
    alternatives: dict[str, list[ModelNeed]] = {}
    tokenizers: dict[str, Any] = {}
    for role in roles:
        role_context = context_length.get(role) if isinstance(context_length, Mapping) else context_length
        if role == "reasoner" and reasoner_gguf is not None:
            slots[role], needs[role] = stock_reasoner_slot(reasoner_gguf, options, role_context, nowait_keywords)
            continue
        role_quant = quant.get(role) if isinstance(quant, Mapping) else quant
        slots[role], needs[role], alternatives[role] = bundle_slot(
            bundle, role, backend, role_quant, options, role_context, kv_cache_type, nowait_keywords, tokenizers,
            image_tokens=image_tokens if role == "perception" else None)
    return slots, needs, alternatives
