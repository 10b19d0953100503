"""The llama.cpp backend: GGUF text models and mmproj vision encoders via llama-cpp-python.

Only the low-level ctypes API is used (`llama_cpp.llama_cpp` and `llama_cpp.mtmd_cpp`):
the runtime owns tokenization, sampling and budgets, so the backend just decodes batches
of token ids or embeddings and returns the last position's logits, and encodes images
with mtmd so embeddings can be cached and fed back with `feed_embeddings`.

- `library`: importing llama_cpp once, native logs routed to `logging`;
- `native_model`: one loaded `llama_model *`, shared and refcounted;
- `language_model`: `LlamaCppLanguageModel` (one context, one sequence);
- `vision`: `MtmdVisionEncoder` (an mmproj through mtmd);
- `tokenizer`: `GGUFTokenizer` (a stock GGUF's own vocabulary);
- `loading`: `load_gguf` (files alone) and `load` (a bundle artifact, checked against
  its manifest).

llama-cpp-python issues worked around (docs/gguf.md): `Llama.detokenize` drops tokens
longer than 32 bytes; `max_tokens` is not enforced mid-UTF-8 and `generate().send()`
cannot force tokens; its default log callback prints everything to stderr.
"""

from __future__ import annotations

from runtime.backends.llamacpp.language_model import MAX_BATCH, LlamaCppLanguageModel
from runtime.backends.llamacpp.library import llama_lib
from runtime.backends.llamacpp.loading import (
    DEFAULT_CONTEXT,
    check_against_manifest,
    load,
    load_gguf,
)
from runtime.backends.llamacpp.tokenizer import GGUFTokenizer
from runtime.backends.llamacpp.vision import MtmdVisionEncoder
from runtime.threads import default_threads

__all__ = [
    "DEFAULT_CONTEXT", "MAX_BATCH", "GGUFTokenizer", "LlamaCppLanguageModel", "MtmdVisionEncoder",
    "check_against_manifest", "default_threads", "llama_lib", "load", "load_gguf",
]
