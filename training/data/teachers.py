"""Teachers for the visual-extraction pipeline, behind one protocol.

A teacher does the paper's two steps for a batch of examples: `statements` (QA pairs ->
declarative statements, text only) and `describe` (image + statements -> fine-grained
description). Three implementations:

- `SyntheticTeacher`: the synthetic world's exact teacher; statements and description are
  built from the scene graph (no model, no image needed).
- `OpenAITeacher`: any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp server...),
  stdlib HTTP only, images as base64 data URLs, retries with backoff, timeouts and
  concurrent requests. This is how the pipeline scales out on a cluster: one server per
  GPU node, one pipeline worker per index shard.
- `TransformersTeacher`: a local transformers VLM (e.g. Qwen3-VL-8B-Instruct), batched
  generation, bf16 on GPU; torch is imported only when it is constructed.

A problem with one row (a refused request, an empty answer) comes back as `Failure` and
becomes an error row; a teacher that cannot be reached at all raises `TeacherError`,
which stops the run (it resumes where it stopped).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from runtime.errors import ConfigError, EdgeError
from training.data import targets
from training.data.records import VisualExample
from training.data.scene import Scene
from training.data.teacher_prompts import description_prompt, parse_statements, statements_prompt

log = logging.getLogger(__name__)

STATEMENT_TOKENS = 1024  # the paper's generation caps
DESCRIPTION_TOKENS = 2048


class TeacherError(EdgeError):
    """The teacher cannot be used at all (unreachable server, model that does not load)."""

    exit_code = 8


@dataclass(frozen=True)
class Failure:
    """One row the teacher could not do; recorded as an error row, the run goes on."""

    reason: str


@dataclass(frozen=True)
class TeacherRequest:
    prompt: str
    image: Image.Image | None
    max_tokens: int


@runtime_checkable
class Teacher(Protocol):
    name: str
    batch_size: int
    needs_image: bool  # False: the pipeline does not even open the images

    def statements(self, examples: Sequence[VisualExample]) -> list[list[str] | Failure]: ...

    def describe(
        self, examples: Sequence[VisualExample], statements: Sequence[list[str]],
        images: Sequence[Image.Image | None],
    ) -> list[str | Failure]: ...


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def strip_thinking(text: str) -> str:
    """Drop a reasoning model's <think> block (Qwen3-style teachers in thinking mode)."""
    text = _THINK.sub("", text)
    if "</think>" in text:  # an opening tag in the prompt's template, closing tag in the output
        text = text.split("</think>", 1)[1]
    return text.strip()


class PromptedTeacher:
    """The two steps as prompts to a model; subclasses implement `complete`."""

    name = "prompted"
    needs_image = True

    def __init__(self, *, batch_size: int = 8, statement_tokens: int = STATEMENT_TOKENS,
                 description_tokens: int = DESCRIPTION_TOKENS) -> None:
        if batch_size < 1 or statement_tokens < 1 or description_tokens < 1:
            raise ConfigError("batch size and token caps must be positive")
        self.batch_size = batch_size
        self.statement_tokens = statement_tokens
        self.description_tokens = description_tokens

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str | Failure]:
        raise NotImplementedError

    def statements(self, examples: Sequence[VisualExample]) -> list[list[str] | Failure]:
        reqs = [TeacherRequest(statements_prompt(ex.qa), None, self.statement_tokens) for ex in examples]
        out: list[list[str] | Failure] = []
        for text in self.complete(reqs):
            if isinstance(text, Failure):
                out.append(text)
                continue
            lines = parse_statements(strip_thinking(text))
            out.append(lines if lines else Failure("the teacher returned no statements"))
        return out

    def describe(
        self, examples: Sequence[VisualExample], statements: Sequence[list[str]],
        images: Sequence[Image.Image | None],
    ) -> list[str | Failure]:
        reqs = [TeacherRequest(description_prompt(st), img, self.description_tokens)
                for st, img in zip(statements, images, strict=True)]
        out: list[str | Failure] = []
        for text in self.complete(reqs):
            if isinstance(text, Failure):
                out.append(text)
                continue
            text = strip_thinking(text)
            out.append(text if text else Failure("the teacher returned an empty description"))
        return out


# ---------------------------------------------------------------------------------------
# The synthetic world's exact teacher


class SyntheticTeacher:
    """Statements and description computed from the scene graph: exact and instant."""

    name = "synthetic"
    needs_image = False

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    @staticmethod
    def _scene(ex: VisualExample):
        if ex.scene is None or any(p.query is None for p in ex.qa):
            raise ConfigError(f"row {ex.index}: the synthetic teacher needs scene graphs and queries "
                              "(use it on datasets written by `edge data synth`)")
        return Scene.from_dict(ex.scene)

    def statements(self, examples: Sequence[VisualExample]) -> list[list[str] | Failure]:
        out: list[list[str] | Failure] = []
        for ex in examples:
            scene = self._scene(ex)
            facts: list[str] = []
            for p in ex.qa:
                facts += [f for f in targets.statements(scene, p.query) if f not in facts]
            out.append(facts)
        return out

    def describe(self, examples: Sequence[VisualExample], statements: Sequence[list[str]],
                 images: Sequence[Any]) -> list[str | Failure]:
        return [targets.extraction(self._scene(ex), [p.query for p in ex.qa]) for ex in examples]


# ---------------------------------------------------------------------------------------
# OpenAI-compatible HTTP servers


def image_data_url(image: Image.Image, fmt: str = "png") -> str:
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
        mime = "image/png"
    elif fmt in ("jpeg", "jpg"):
        image.convert("RGB").save(buf, format="JPEG", quality=95)
        mime = "image/jpeg"
    else:
        raise ConfigError(f"image format must be png or jpeg, not {fmt!r}")
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_endpoint(base_url: str) -> str:
    """http://host:8000 or http://host:8000/v1 -> http://host:8000/v1/chat/completions."""
    url = base_url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the server URL must start with http:// or https://, got {base_url!r}")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAITeacher(PromptedTeacher):
    """A chat-completions server; requests of a batch run `concurrency` at a time."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        batch_size: int | None = None,
        timeout: float = 300.0,
        retries: int = 5,
        backoff: float = 1.0,
        image_format: str = "png",
        temperature: float = 0.0,
        seed: int | None = 0,
        statement_tokens: int = STATEMENT_TOKENS,
        description_tokens: int = DESCRIPTION_TOKENS,
        extra_body: dict | None = None,
    ) -> None:
        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise ConfigError("concurrency must be >= 1, retries >= 0 and timeout > 0")
        super().__init__(batch_size=batch_size or concurrency * 4, statement_tokens=statement_tokens,
                         description_tokens=description_tokens)
        self.url = chat_endpoint(base_url)
        self.model = model
        self.name = f"openai:{model}"
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.image_format = image_format
        self.temperature = temperature
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        self._jitter = random.Random(0)
        # token counts the server reported (for throughput and cost reports)
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()

    def payload(self, req: TeacherRequest) -> dict:
        if req.image is None:
            content: str | list[dict] = req.prompt
        else:
            content = [
                {"type": "image_url", "image_url": {"url": image_data_url(req.image, self.image_format)}},
                {"type": "text", "text": req.prompt},
            ]
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": req.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        body.update(self.extra_body)
        return body

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def _one(self, req: TeacherRequest) -> str | Failure:
        body = self.payload(req)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * self._jitter.random())
                log.info("retrying %s in %.1fs (%s)", self.url, delay, last)
                time.sleep(delay)
            try:
                reply = self._post(body)
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code in RETRY_STATUS:
                    last = f"HTTP {exc.code} {detail}"
                    continue
                return Failure(f"the server refused the request: HTTP {exc.code} {detail}".strip())
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
                continue
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                last = f"unreadable reply ({exc})"
                continue
            self._count(reply)
            try:
                text = reply["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                return Failure(f"the reply has no message content: {str(reply)[:200]}")
            return text if isinstance(text, str) else Failure("the reply content is not text")
        raise TeacherError(f"{self.url} failed {self.retries + 1} times: {last}")

    def _count(self, reply: object) -> None:
        usage = reply.get("usage") if isinstance(reply, dict) else None
        with self._lock:
            self.usage["requests"] += 1
            if isinstance(usage, dict):
                for key in ("prompt_tokens", "completion_tokens"):
                    if isinstance(usage.get(key), int):
                        self.usage[key] += usage[key]

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str | Failure]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except Exception:  # the error body is only a courtesy
        return exc.reason or ""
    try:
        msg = json.loads(body).get("error", body)
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        return str(msg)[:300]
    except (json.JSONDecodeError, AttributeError):
        return body[:300]


# ---------------------------------------------------------------------------------------
# transformers


class TransformersTeacher(PromptedTeacher):
    """A local image-text-to-text model with its processor (Qwen3-VL, LLaVA, ...).

    bf16 on CUDA, float32 on CPU unless `dtype` says otherwise; greedy decoding; prompts
    go through the processor's own chat template (transformers renders it in a sandbox);
    remote code is never trusted and weights load from safetensors only.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 8,
        statement_tokens: int = STATEMENT_TOKENS,
        description_tokens: int = DESCRIPTION_TOKENS,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, statement_tokens=statement_tokens,
                         description_tokens=description_tokens)
        try:  # deferred: only this teacher needs the PyTorch stack
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError:
            raise ConfigError("the transformers teacher needs torch and transformers: "
                              "pip install -e '.[train]'") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        name = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        torch_dtype = getattr(torch, name, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ConfigError(f"unknown dtype {name!r}")
        local = os.path.exists(model)
        # device_map places the weights straight on the device: an 8B model in bf16 is never
        # materialised in host memory first
        kw: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": True, "trust_remote_code": False,
                              "local_files_only": local, "device_map": self.device}
        if attn_implementation:
            kw["attn_implementation"] = attn_implementation
        try:
            self.processor = AutoProcessor.from_pretrained(str(model), trust_remote_code=False, local_files_only=local)
            self.model = AutoModelForImageTextToText.from_pretrained(str(model), **kw).eval()
        except (OSError, ValueError) as exc:
            raise TeacherError(f"cannot load the teacher {model}: {str(exc).splitlines()[0]}") from None
        tok = getattr(self.processor, "tokenizer", self.processor)
        tok.padding_side = "left"  # batched generation continues every row from its end
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.name = f"transformers:{os.path.basename(str(model).rstrip('/')) or model}"
        self._torch = torch

    def _messages(self, req: TeacherRequest) -> list[dict]:
        content: list[dict] = [{"type": "image"}] if req.image is not None else []
        content.append({"type": "text", "text": req.prompt})
        return [{"role": "user", "content": content}]

    def complete(self, requests: Sequence[TeacherRequest]) -> list[str | Failure]:
        out: list[str | Failure] = []
        for i in range(0, len(requests), self.batch_size):
            out += self._batch(requests[i:i + self.batch_size])
        return out

    def _batch(self, reqs: Sequence[TeacherRequest]) -> list[str]:
        with_image = [r.image is not None for r in reqs]
        if any(with_image) and not all(with_image):  # the pipeline never mixes; keep it simple
            return [self._batch([r])[0] for r in reqs]
        texts = [self.processor.apply_chat_template(self._messages(r), tokenize=False, add_generation_prompt=True)
                 for r in reqs]
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if all(with_image):
            kwargs["images"] = [r.image for r in reqs]
        inputs = self.processor(**kwargs).to(self.device)
        if "pixel_values" in inputs and self.model.dtype != inputs["pixel_values"].dtype:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        max_new = max(r.max_tokens for r in reqs)
        with self._torch.inference_mode():
            generated = self.model.generate(**inputs, max_new_tokens=max_new, do_sample=False)
        new = generated[:, inputs["input_ids"].shape[1]:]
        return list(self.processor.batch_decode(new, skip_special_tokens=True))
