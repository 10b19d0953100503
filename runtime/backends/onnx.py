"""ONNX Runtime backend: plain `InferenceSession`s and the project's own KV-cache loop.

An ONNX artifact has three graphs (written by `export.onnx`):

- "embed":   input_ids [batch, seq] int64 -> inputs_embeds [batch, seq, hidden]
- "decoder": inputs_embeds, attention_mask [batch, past+seq] int64, position_ids
             [batch, seq] int64, logits_index [keep] int64 and per layer i
             past_key_values.{i}.key|value [batch, kv_heads, past, head_dim]
             -> logits [batch, keep, vocab], present.{i}.key|value [batch, kv_heads,
             past+seq, head_dim]
- "vision":  pixel_values [batch, 3, size, size] f32 -> image_embeds [batch, tokens, hidden]

`logits_index` picks the positions of this call whose logits are computed: the loop asks
for the last one only, so a prefill never materialises [seq, vocab] logits.

The KV cache never passes through numpy while decoding: each step's `present.*` outputs
are OrtValues that go straight back in as the next step's `past_key_values.*`
(`run_with_ort_values`), so Python neither copies nor concatenates the cache; the only
per-step copy is the one the graph's own Concat makes. Only `truncate` copies (once).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import BackendOptions, PrefixState
from runtime.backends.onnx_graph import (
    DECODER_EMBEDS,
    DECODER_LOGITS,
    DECODER_LOGITS_INDEX,
    DECODER_MASK,
    DECODER_POSITIONS,
    EMBED_INPUT,
    EMBED_OUTPUT,
    KV_KINDS,
    VISION_INPUT,
    VISION_OUTPUT,
    check_decoder,
    check_embed,
    check_vision,
    past_name,
    present_name,
)
from runtime.bundle import Bundle
from runtime.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    ContextOverflowError,
    ImageError,
    InputError,
)
from runtime.manifest import Artifact, ImagePreprocess, TextShape, VisionShape
from runtime.threads import default_threads

__all__ = [  # the graph contract is re-exported: export.onnx imports it from here
    "DECODER_EMBEDS", "DECODER_LOGITS", "DECODER_LOGITS_INDEX", "DECODER_MASK", "DECODER_POSITIONS",
    "EMBED_INPUT", "EMBED_OUTPUT", "KV_KINDS", "PREFILL_CHUNK", "VISION_INPUT", "VISION_OUTPUT",
    "OnnxLanguageModel", "OnnxVisionEncoder", "check_decoder", "check_embed", "check_vision",
    "default_threads", "load", "open_session", "past_name", "present_name", "providers_for", "session_options",
]

log = logging.getLogger(__name__)

PREFILL_CHUNK = 512  # positions per decoder call when feeding a long prompt
# Quants whose decoder quantizes activations per call (one scale across all positions):
# int8 (`quantize_dynamic`). int4's MatMulNBits quantizes per row block, but that is not
# measured here, so it is listed too: prompt lookup stays off where exactness is unknown.
PER_CALL_QUANTIZED = frozenset({"int8", "int4"})


def _import_ort() -> Any:
    try:
        # heavy optional dependency (the onnx extra): imported on first use only, so
        # `import runtime` works where onnxruntime is not installed
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError("onnxruntime", "onnx", str(exc)) from None
    return onnxruntime


def session_options(ort: Any, options: BackendOptions) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # onnxruntime warnings go to stderr, not our logging
    return so


def providers_for(ort: Any, options: BackendOptions) -> list[str]:
    wanted = list(options.providers) or ["CPUExecutionProvider"]
    have = ort.get_available_providers()
    missing = [p for p in wanted if p not in have]
    if missing:
        raise ConfigError(
            f"onnxruntime has no {', '.join(missing)} here (available: {', '.join(have)})"
        )
    return wanted


def open_session(ort: Any, path: Path, so: Any, providers: list[str]) -> Any:
    if not path.is_file():
        raise BundleError(f"{path}: missing ONNX file")
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except MemoryError:
        raise
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path.name}: onnxruntime cannot load it ({first[:300]})") from None


# --- the language model ---------------------------------------------------------------


class OnnxLanguageModel:
    """One sequence (batch 1) over the embed + decoder sessions."""

    def __init__(self, ort: Any, decoder: Any, embed: Any, text: TextShape, n_ctx: int,
                 *, owner: str = "", batch_invariant: bool = True) -> None:
        # int8 graphs quantize each call's activations with one scale for the whole call
        # (`DynamicQuantizeLinear`), so a position's logits depend on its batch: measured
        # up to 0.18 logit apart on the default bundle, enough to flip a greedy token.
        self.batch_invariant = batch_invariant
        self._ort_value = ort.OrtValue.ortvalue_from_numpy
        # what a saved state is valid for (the artifact's weights, given by `load`)
        self._owner = f"onnx|{owner or id(decoder)}|layers={text.num_layers}|kv={text.num_kv_heads}x{text.head_dim}"
        self._decoder = decoder
        self._embed = embed
        self._text = text
        self._n_ctx = n_ctx
        self._past_names = [past_name(i, k) for i in range(text.num_layers) for k in KV_KINDS]
        self._out_names = [DECODER_LOGITS] + [
            present_name(i, k) for i in range(text.num_layers) for k in KV_KINDS
        ]
        # Slices of these rows are contiguous views: no per-step allocation for the mask
        # and positions, and OrtValues can wrap them without a copy.
        self._ones = np.ones((1, n_ctx), dtype=np.int64)
        self._positions = np.arange(n_ctx, dtype=np.int64)[None, :]
        self._empty_kv = np.zeros((1, text.num_kv_heads, 0, text.head_dim), dtype=np.float32)
        self._keep_none = np.zeros(0, dtype=np.int64)  # intermediate prefill chunks: no logits
        self._kv: list[Any] = []
        self._n_past = 0
        self.reset()

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        return self._text.vocab_size

    @property
    def n_past(self) -> int:
        return self._n_past

    def reset(self) -> None:
        empty = self._ort_value(self._empty_kv)
        self._kv = [empty] * len(self._past_names)
        self._n_past = 0

    def truncate(self, n: int) -> None:
        if not 0 <= n <= self._n_past:
            raise InputError(f"cannot truncate to {n}: the sequence has {self._n_past} positions")
        if n == self._n_past:
            return
        if n == 0:
            self.reset()
            return
        self._kv = [self._ort_value(np.ascontiguousarray(v.numpy()[:, :, :n])) for v in self._kv]
        self._n_past = n

    def embed(self, ids: Sequence[int]) -> np.ndarray:
        """Token ids -> float32 [n, hidden] input embeddings."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self._text.vocab_size):
            bad = int(arr[(arr < 0) | (arr >= self._text.vocab_size)][0])
            top = self._text.vocab_size - 1
            raise InputError(f"token id {bad} is outside the vocabulary (0..{top})")
        return self._embed.run([EMBED_OUTPUT], {EMBED_INPUT: arr[None, :]})[0][0]

    def feed_tokens(self, ids: Sequence[int]) -> np.ndarray:
        if len(ids) == 0:
            raise InputError("feed_tokens needs at least one token")
        return self.feed_embeddings(self.embed(ids))

    def feed_tokens_all(self, ids: Sequence[int]) -> np.ndarray:
        """Feed `ids` in one decoder call with logits for every position: [n, n_vocab]
        (prompt-lookup verification; n is at most `PREFILL_CHUNK`)."""
        n = len(ids)
        if not 0 < n <= PREFILL_CHUNK:
            raise InputError(f"feed_tokens_all takes 1..{PREFILL_CHUNK} token ids, got {n}")
        if self._n_past + n > self._n_ctx:
            raise ContextOverflowError(f"{self._n_past + n} positions do not fit the context of {self._n_ctx} tokens")
        x = self.embed(ids)[None, :, :]
        saved = (self._kv, self._n_past)
        try:
            logits = self._step(x, self._positions[0, :n])
        except BaseException:
            self._kv, self._n_past = saved
            raise
        return logits[0].astype(np.float32, copy=False)

    def feed_embeddings(self, embeds: np.ndarray) -> np.ndarray:
        embeds = np.asarray(embeds)
        if embeds.ndim != 2 or embeds.shape[1] != self._text.hidden_size or embeds.shape[0] == 0:
            raise InputError(
                f"embeddings must be [n >= 1, {self._text.hidden_size}], got {list(embeds.shape)}"
            )
        n = embeds.shape[0]
        if self._n_past + n > self._n_ctx:
            raise ContextOverflowError(
                f"{self._n_past + n} positions do not fit the context of {self._n_ctx} tokens"
            )
        x = np.ascontiguousarray(embeds[None, :, :], dtype=np.float32)
        # Long prompts go in chunks: attention scores are [heads, chunk, past + chunk], so
        # a 4,000-token prompt in one call would need a GB of scratch on a small device.
        saved = (self._kv, self._n_past)
        try:
            for start in range(0, n, PREFILL_CHUNK):
                chunk = x[:, start : start + PREFILL_CHUNK]
                width = chunk.shape[1]
                last = start + width == n
                keep = np.array([width - 1], dtype=np.int64) if last else self._keep_none
                logits = self._step(chunk, keep)
        except BaseException:
            self._kv, self._n_past = saved  # a failed call leaves the sequence as it was
            raise
        return logits[0, -1].astype(np.float32, copy=False)

    def _step(self, x: np.ndarray, keep: np.ndarray) -> np.ndarray:
        end = self._n_past + x.shape[1]
        feeds = {
            DECODER_EMBEDS: self._ort_value(np.ascontiguousarray(x)),
            DECODER_MASK: self._ort_value(self._ones[:, :end]),
            DECODER_POSITIONS: self._ort_value(self._positions[:, self._n_past : end]),
            DECODER_LOGITS_INDEX: self._ort_value(keep),
        }
        feeds.update(zip(self._past_names, self._kv, strict=True))
        outs = self._decoder.run_with_ort_values(self._out_names, feeds)
        self._kv = outs[1:]
        self._n_past = end
        return outs[0].numpy()

    def save_state(self) -> PrefixState:
        """The past key/value arrays, copied out of onnxruntime into read-only numpy arrays
        (so they outlive the session; the graph never writes its inputs, so a restore
        wraps them again without a copy)."""
        arrays = []
        for v in self._kv:
            a = v.numpy()  # a copy on the CPU provider; copy again only if it is a view
            if not a.flags.owndata:
                a = a.copy()
            a.setflags(write=False)
            arrays.append(a)
        return PrefixState(n_past=self._n_past, nbytes=sum(a.nbytes for a in arrays), owner=self._owner,
                           data=tuple(arrays))

    def load_state(self, state: PrefixState) -> None:
        if state.owner != self._owner:
            raise InputError(f"this prefix state was saved by another model ({state.owner}), not by {self._owner}")
        if state.n_past > self._n_ctx:
            raise ContextOverflowError(f"the prefix state holds {state.n_past} positions; "
                                       f"the context holds {self._n_ctx}")
        if len(state.data) != len(self._past_names) or state.n_past == 0:
            self.reset()
            if state.n_past == 0:
                return
            raise InputError(f"the prefix state has {len(state.data)} key/value arrays, "
                             f"the decoder takes {len(self._past_names)}")
        self._kv = [self._ort_value(a) for a in state.data]
        self._n_past = state.n_past

    def close(self) -> None:
        self._kv = []
        self._decoder = self._embed = None


# --- the vision encoder ---------------------------------------------------------------


class OnnxVisionEncoder:
    def __init__(self, session: Any, vision: VisionShape, image: ImagePreprocess) -> None:
        self._session = session
        self._vision = vision
        self._size = image.size
        # Same order as the SigLIP processor: rescale to [0, 1], then (x - mean) / std.
        self._mean = np.asarray(image.mean, dtype=np.float32)
        self._std = np.asarray(image.std, dtype=np.float32)

    @property
    def tokens_per_image(self) -> int:
        return self._vision.tokens_per_image

    @property
    def image_size(self) -> int:
        return self._size

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """uint8 [size, size, 3] -> float32 [1, 3, size, size] pixel values."""
        want = (self._size, self._size, 3)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != want:
            got = (getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None))
            raise ImageError(
                f"the vision encoder takes uint8 {list(want)} pixels, got {got[0]} {got[1]}"
            )
        x = image.astype(np.float32) * np.float32(1.0 / 255.0)
        x = (x - self._mean) / self._std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def encode(self, image: np.ndarray) -> np.ndarray:
        out = self._session.run([VISION_OUTPUT], {VISION_INPUT: self.normalise(image)})[0]
        return out[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self._session = None


# --- entry point ----------------------------------------------------------------------


def load(
    bundle: Bundle, role: str, artifact: Artifact, options: BackendOptions
) -> tuple[OnnxLanguageModel, OnnxVisionEncoder | None]:
    """Open the artifact's graphs, check them against the manifest, return the model."""
    if artifact.format != "onnx":
        raise BundleError(f"the onnx backend cannot load a {artifact.format} artifact")
    entry = bundle.model(role)
    needed = ["decoder", "embed"] + (["vision"] if entry.vision is not None else [])
    missing = [p for p in needed if p not in artifact.files]
    if missing:
        raise BundleError(
            f"the {role} onnx/{artifact.quant} artifact has no {', '.join(missing)} file"
        )
    if "vision" in artifact.files and entry.vision is None:
        raise BundleError(f"the {role} model has a vision graph but no vision/image settings")
    if options.context_length is not None and options.context_length < 1:
        raise InputError(f"context_length must be positive, got {options.context_length}")

    ort = _import_ort()
    so = session_options(ort, options)
    providers = providers_for(ort, options)
    text = entry.text
    paths = {part: bundle.path(rel) for part, rel in artifact.files.items()}

    # A row lookup gains nothing from threads, and an idle pool's spinning workers only
    # compete with the decoder's.
    one_thread = session_options(ort, replace(options, threads=1))
    embed = open_session(ort, paths["embed"], one_thread, providers)
    check_embed(artifact.files["embed"], embed, text)
    decoder = open_session(ort, paths["decoder"], so, providers)
    check_decoder(artifact.files["decoder"], decoder, text)
    vision = None
    if entry.vision is not None and entry.image is not None and options.runs_vision("onnx"):
        vision = load_vision(bundle, role, artifact, options)

    n_ctx = min(options.context_length or text.context_length, text.context_length)
    log.info(
        "onnx %s %s loaded: %d threads, %s, context %d",
        role, artifact.quant, so.intra_op_num_threads, ",".join(providers), n_ctx,
    )
    owner = ",".join(f"{part}={bundle.manifest.files[rel].sha256}" for part, rel in sorted(artifact.files.items())
                     if part in ("decoder", "embed"))
    lm = OnnxLanguageModel(ort, decoder, embed, text, n_ctx, owner=owner,
                           batch_invariant=artifact.quant not in PER_CALL_QUANTIZED)
    return lm, vision


def load_vision(bundle: Bundle, role: str, artifact: Artifact, options: BackendOptions) -> OnnxVisionEncoder:
    """Only the vision graph of `role`'s ONNX artifact, checked against the manifest: the
    encoder of the ONNX backend, or beside a text model on another backend
    (`BackendOptions.vision_backend`)."""
    entry = bundle.model(role)
    if artifact.format != "onnx" or "vision" not in artifact.files:
        raise BundleError(f"the {role} {artifact.format}/{artifact.quant} artifact has no ONNX vision graph")
    if entry.vision is None or entry.image is None:
        raise BundleError(f"the {role} model has a vision graph but no vision/image settings")
    ort = _import_ort()
    session = open_session(ort, bundle.path(artifact.files["vision"]), session_options(ort, options),
                           providers_for(ort, options))
    check_vision(artifact.files["vision"], session, entry.vision, entry.image, entry.text.hidden_size)
    return OnnxVisionEncoder(session, entry.vision, entry.image)
