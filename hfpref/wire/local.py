"""In-process generation for ``local:PATH_OR_HUB_ID`` models, answering like an OpenAI endpoint.

:func:`local_chat` takes an OpenAI chat-completions request body (``model``, ``messages``,
``temperature``, ``max_tokens``, optional ``top_p`` and ``n``) and returns an OpenAI-shaped response
dict. :class:`LocalTransport` puts it behind the same seam as HTTP (:mod:`hfpref.wire.transport`), so
that :class:`~hfpref.wire.client.ChatClient` caches and accounts it like any endpoint's answer
(``usage.cost`` is always 0.0).

How it runs:

- The tokenizer and model are loaded once per process per model id (``AutoTokenizer`` /
  ``AutoModelForCausalLM.from_pretrained``: a local folder or a Hub id, downloaded or cached), on
  CUDA when available, else on the CPU. A model that cannot be loaded raises a one-line
  :class:`~hfpref.errors.ConfigError`.
- Requests are batched: a per-(event loop, model) queue collects the requests that arrive while a
  generation runs, and the next ``generate`` call serves up to :data:`MAX_BATCH` of them at once
  (left padding; requests with the same sampling parameters share a call). Generation runs in a
  worker thread (``asyncio.to_thread``), so the event loop keeps serving other requests.
  Each ``datasets.map`` call runs its own event loop, hence the queues are keyed by loop; a queue's
  worker task exits as soon as the queue is empty, so no task outlives its loop.
- ``temperature == 0`` is greedy decoding (``n`` copies of the one greedy answer); otherwise
  sampling with ``temperature`` and ``top_p``, ``n`` completions via ``num_return_sequences``.

Not implemented: a ``vllm:`` prefix that would run vLLM's offline ``LLM`` engine in-process (it
batches far better than ``generate``). Today, use vLLM through its OpenAI-compatible server
(``vllm serve MODEL``) as an endpoint instead: it supports ``n``.

torch and transformers are imported lazily, inside functions, so ``import hfpref`` stays light.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from hfpref.errors import ConfigError

if TYPE_CHECKING:
    from hfpref.wire.transport import Request

MAX_BATCH = int(os.environ.get("HFPREF_LOCAL_MAX_BATCH", "16"))
"""Most requests (prompts) in one ``generate`` call (env ``HFPREF_LOCAL_MAX_BATCH``)."""

DEFAULT_MAX_TOKENS = 512


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    device: str
    eos_ids: set[int]
    pad_id: int
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Pending:
    body: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]


@dataclass
class _Batcher:
    queue: list[_Pending] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None


_MODELS: dict[str, _Loaded] = {}
_LOAD_LOCK = threading.Lock()
_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Batcher]] = (
    weakref.WeakKeyDictionary()
)


def _load(model_id: str) -> _Loaded:
    """The tokenizer and model of ``model_id``, loaded on first use (thread-safe)."""
    with _LOAD_LOCK:
        if model_id in _MODELS:
            return _MODELS[model_id]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id)
            model = AutoModelForCausalLM.from_pretrained(
                model_id, dtype="auto" if device == "cuda" else torch.float32
            )
        except (OSError, ValueError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"local model {model_id!r} could not be loaded ({first}); "
                "give a folder with a transformers model, or a Hub id that is cached or downloadable"
            ) from None
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError(f"local model {model_id!r} has no chat template; use a chat/instruct model")
        model.to(device).eval()
        tokenizer.padding_side = "left"
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        loaded = _Loaded(tokenizer, model, device, eos_ids, int(tokenizer.pad_token_id))
        _MODELS[model_id] = loaded
        return loaded


def _params(body: dict[str, Any]) -> tuple[float, float | None, int, int]:
    temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
    top_p = body.get("top_p")
    max_tokens = int(body.get("max_tokens") or DEFAULT_MAX_TOKENS)
    n = int(body.get("n") or 1)
    return temperature, None if top_p is None else float(top_p), max_tokens, n


def _generate(loaded: _Loaded, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``generate`` call for ``bodies`` (all with the same sampling parameters)."""
    import torch

    temperature, top_p, max_tokens, n = _params(bodies[0])
    tok = loaded.tokenizer
    texts = [
        tok.apply_chat_template(b["messages"], tokenize=False, add_generation_prompt=True) for b in bodies
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
    greedy = temperature <= 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "pad_token_id": loaded.pad_id,
        "eos_token_id": sorted(loaded.eos_ids),
    }
    if greedy:
        kwargs.update(do_sample=False, num_return_sequences=1, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=temperature, num_return_sequences=n, top_k=None)
        kwargs["top_p"] = top_p if top_p is not None else 1.0
    with loaded.lock, torch.inference_mode():
        out = loaded.model.generate(**enc, **kwargs)
    prompt_len = enc["input_ids"].shape[1]
    new = out[:, prompt_len:].tolist()
    per_prompt = 1 if greedy else n
    responses = []
    for i, _body in enumerate(bodies):
        prompt_tokens = int(enc["attention_mask"][i].sum())
        choices = []
        completion_tokens = 0
        for j in range(per_prompt):
            ids = new[i * per_prompt + j]
            stop = next((k for k, t in enumerate(ids) if t in loaded.eos_ids), None)
            kept = ids if stop is None else ids[:stop]
            kept = [t for t in kept if t != loaded.pad_id]
            text = tok.decode(kept, skip_special_tokens=True)
            finish = "stop" if stop is not None else "length"
            used = len(kept) + (0 if stop is None else 1)
            copies = n if greedy else 1  # greedy: the n samples are the one greedy answer
            for _ in range(copies):
                choices.append(
                    {
                        "index": len(choices),
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                )
                completion_tokens += used
        responses.append(
            {
                "object": "chat.completion",
                "model": str(bodies[0].get("model", "")),
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "cost": 0.0,
                },
            }
        )
    return responses


async def _work(model_id: str, batcher: _Batcher) -> None:
    """Serve ``batcher``'s queue until it is empty, up to MAX_BATCH requests per group per call."""
    try:
        loaded = await asyncio.to_thread(_load, model_id)
    except ConfigError as exc:
        pending, batcher.queue = batcher.queue, []
        batcher.worker = None
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exc)
        return
    while batcher.queue:
        first = _params(batcher.queue[0].body)
        group = [p for p in batcher.queue if _params(p.body) == first][:MAX_BATCH]
        taken = {id(p) for p in group}
        batcher.queue = [p for p in batcher.queue if id(p) not in taken]
        group = [p for p in group if not p.future.done()]  # cancelled while waiting
        if not group:
            continue
        try:
            results = await asyncio.to_thread(_generate, loaded, [p.body for p in group])
        except (RuntimeError, ValueError, TypeError) as exc:  # e.g. CUDA OOM, bad messages
            for p in group:
                if not p.future.done():
                    p.future.set_exception(exc)
            continue
        for p, result in zip(group, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)
    batcher.worker = None


async def local_chat(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """Answer one chat-completions request ``body`` with the local model ``model`` (path or Hub id)."""
    loop = asyncio.get_running_loop()
    batchers = _BATCHERS.setdefault(loop, {})
    batcher = batchers.setdefault(model, _Batcher())
    future: asyncio.Future[dict[str, Any]] = loop.create_future()
    batcher.queue.append(_Pending(body, future))
    if batcher.worker is None:
        batcher.worker = loop.create_task(_work(model, batcher))
    return await future


class LocalTransport:
    """The transport of ``local:PATH_OR_HUB_ID`` models: each request is answered in-process."""

    async def send(self, request: Request) -> dict[str, Any]:
        return await local_chat(request.model.removeprefix("local:"), orjson.loads(request.body))

    async def aclose(self) -> None:
        """Nothing to close: a loop's batch workers end as soon as their queue is empty."""
