"""The perception model's KV state after the image prefix, kept across requests.

Every perception prompt starts with the same positions for a given image: the system
turn, the user header and the image rows (the instruction comes after the image). The
KV state after them is the same for every question about that image, so a second
question restores it (`LanguageModel.load_state`) and pays neither the vision encoder
nor the image prefill. States live in host memory, so they survive sequential
residency unloading the model between stages.

The cache is an LRU bounded by bytes (`ExtractThink.load(prefix_cache_mb=...)`; 0 turns
it off). An entry is large: a llama.cpp F16 KV cache takes 2 x layers x kv_heads x
head_dim x 2 bytes per position (112 KiB for Qwen3-0.6B, so ~80 MiB for a 729-token
image), the ONNX backend keeps float32 arrays (twice that).

The same cache keeps the reasoner's state after the fixed start of its prompts (user
header, role or instruction line: `prompts.shared_start`), keyed by the model and those
token ids, so later requests restore it instead of prefilling it (`stages.reuse_shared_start`);
such an entry is small (tens of positions). With a prompt cache folder those text states are
also kept on disk for later processes (`runtime.prompt_store`).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.backends.base import PrefixState
from runtime.cache import LRUCache
from runtime.prompt_store import PromptStore


@dataclass(frozen=True)
class PrefixKey:
    """What a saved prefix state depends on."""

    image_hash: str  # the preprocessed image's content ("" for a text-only prefix)
    artifact_id: str  # the perception model's weights (format and quantization included)
    kv_cache_type: str  # llama.cpp states are specific to the KV cache type
    prefix: tuple[int | None, ...]  # the prompt's ids up to the last image position (None: image)
    variant: str = ""  # anything else that changes the image rows (how they were pooled); "text": no image


class PrefixCache(LRUCache[PrefixState]):
    """`PrefixState`s per `PrefixKey`, least recently used dropped first. With a `store`
    (`runtime.prompt_store`), text-only states (the reasoner's prompt starts) are also kept
    on disk and read from there when memory does not hold them."""

    def __init__(self, max_bytes: int, store: PromptStore | None = None) -> None:
        super().__init__(max_bytes)
        self.store = store

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _on_disk(self, key: PrefixKey) -> bool:
        return self.store is not None and key.image_hash == ""

    def put_state(self, key: PrefixKey, state: PrefixState) -> None:
        self.put(key, state, state.nbytes)
        if self._on_disk(key):
            self.store.put(key, state)

    def get_state(self, key: PrefixKey) -> PrefixState | None:
        state = self.get(key)
        if state is None and self._on_disk(key):
            state = self.store.get(key)
            if state is not None:
                self.put(key, state, state.nbytes)
        return state

    def drop(self, key: PrefixKey) -> None:
        """Forget `key` (a state that could not be restored), on disk too."""
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._bytes -= item[1]
        if self._on_disk(key):
            self.store.drop(key)
