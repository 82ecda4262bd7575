"""Generation: N completions per prompt from one or several weighted models.

``ds.map(hfpref.generate, batched=True)`` adds ``completions`` (list of str or null),
``completion_models`` and ``generation`` (per-completion metadata: model, finish_reason, tokens,
cost, cached, error, and ``batch_id``: the Batch API batch the answer came in, null when online). A
request that fails for good leaves null plus its error; no row is dropped or reordered. Completion
``j`` of a prompt goes to a model drawn by weight from a generator seeded with (seed, prompt, j): the
same prompt routes the same way in every run, batch size and process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from hfpref.config import (
    GenerateConfig,
    ModelSpec,
    ProviderConfig,
    default_config_path,
    default_models,
    load_config,
)
from hfpref.errors import BadRequestError
from hfpref.stages.base import (
    Access,
    Stage,
    client_for,
    is_single_row,
    prompt_column,
    row_label,
    to_messages,
    typed_columns,
)
from hfpref.stages.concurrency import map_call
from hfpref.wire.client import ChatClient
from hfpref.wire.tasks import gather_all

SCHEMA = pa.schema(
    [
        ("completions", pa.list_(pa.string())),
        ("completion_models", pa.list_(pa.string())),
        (
            "generation",
            pa.list_(
                pa.struct(
                    [
                        ("model", pa.string()),
                        ("finish_reason", pa.string()),
                        ("prompt_tokens", pa.int64()),
                        ("completion_tokens", pa.int64()),
                        ("cost", pa.float64()),
                        ("cached", pa.bool_()),
                        ("refusal", pa.string()),
                        ("error", pa.string()),
                        ("batch_id", pa.string()),
                    ]
                )
            ),
        ),
        ("reasoning", pa.list_(pa.string())),
    ]
)
"""The columns generation adds (each completion's ``generation`` record: see :meth:`ChatClient.complete`)."""
_METADATA = [f.name for f in SCHEMA.field("generation").type.value_type]


@dataclass
class GenerateSpec:
    """Everything a Generator needs, picklable; ``run_id`` keys its client and budget."""

    config: GenerateConfig
    access: Access = field(default_factory=Access)


def route(models: list[ModelSpec], seed: int, prompt_key: bytes, n: int) -> list[str]:
    """The model of each of the ``n`` completions of one prompt, deterministic for the seed."""
    if len(models) == 1:
        return [models[0].id] * n
    ids = [m.id for m in models]
    weights = [m.weight for m in models]
    digest = hashlib.sha256(prompt_key).hexdigest()
    return [random.Random(f"{seed}:{digest}:{j}").choices(ids, weights)[0] for j in range(n)]


_Request = tuple[str, list[int], list[str]]  # model, sample indices, their cache keys


def _plan(
    client: ChatClient, cfg: GenerateConfig, conversations: list[list[dict[str, Any]]], params: dict[str, Any]
) -> list[tuple[list[dict[str, Any]], list[_Request]]]:
    """Per prompt: its messages and one request per model its completions are routed to."""
    plans = []
    for messages in conversations:
        by_model: dict[str, list[int]] = {}
        for j, model in enumerate(route(cfg.models, cfg.seed, orjson.dumps(messages), cfg.n)):
            by_model.setdefault(model, []).append(j)
        requests = [
            (m, samples, client.keys(m, messages, params, samples)) for m, samples in by_model.items()
        ]
        plans.append((messages, requests))
    return plans


@map_call
async def _generate(spec: GenerateSpec, batch: Mapping[str, Any], indices: Any = None) -> dict[str, Any]:
    cfg = spec.config
    column = prompt_column(batch.keys(), cfg.prompt_column)
    single = is_single_row(batch, column)
    prompts = [batch[column]] if single else batch[column]
    conversations = [
        to_messages(p, row_label(batch, i, single, indices), column, cfg.system_prompt)
        for i, p in enumerate(prompts)
    ]
    client = client_for(spec.access, "generate", cfg.models, cfg.concurrency, batch_api=cfg.batch_api)
    params: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
    if cfg.top_p is not None:
        params["top_p"] = cfg.top_p

    # the batch's turn on the backlog first: bounded work in progress however many batches map starts
    async with client.open() as state, state.backlog.batch(len(conversations)) as admitted:
        plans = _plan(client, cfg, conversations, params)
        found = client.lookup([key for _, requests in plans for _, _, keys in requests for key in keys])

        async def one_prompt(
            messages: list[dict[str, Any]], requests: list[_Request]
        ) -> list[dict[str, Any]]:
            if len(requests) == 1:
                ((model, samples, keys),) = requests
                return await client.complete(state, model, messages, params, samples, keys, found)
            parts = await gather_all(
                *(
                    client.complete(state, m, messages, params, samples, keys, found)
                    for m, samples, keys in requests
                )
            )
            records: list[dict[str, Any]] = [{}] * cfg.n
            for (_, samples, _), got in zip(requests, parts, strict=True):
                for j, record in zip(samples, got, strict=True):
                    records[j] = record
            return records

        # A few workers over the batch rather than a task per prompt: the client's semaphore
        # bounds what is in flight anyway, and a task per prompt costs more CPU than its parsing.
        results: list[list[dict[str, Any]]] = [[] for _ in plans]
        todo = iter(enumerate(plans))

        async def worker() -> None:
            for i, (messages, requests) in todo:
                try:
                    results[i] = await one_prompt(messages, requests)
                except BadRequestError as exc:  # this row's request was refused: say which row
                    exc.at_row(row_label(batch, i, single, indices))
                    raise
                admitted.done()

        await gather_all(*(worker() for _ in range(min(len(plans), client.in_flight))))

    completions = [[r["text"] for r in rows] for rows in results]
    models_used = [[r["model"] for r in rows] for rows in results]
    reasoning = [[r["reasoning"] for r in rows] for rows in results]
    metadata = [[{k: r[k] for k in _METADATA} for r in rows] for rows in results]
    if single:
        return {
            "completions": completions[0],
            "completion_models": models_used[0],
            "generation": metadata[0],
            "reasoning": reasoning[0],
        }
    columns = {
        "completions": completions,
        "completion_models": models_used,
        "generation": metadata,
        "reasoning": reasoning,
    }
    return typed_columns(columns, SCHEMA)


class Generator(Stage):
    """A ready-to-map generation function: ``ds.map(Generator(models=..., n=4), batched=True)``.

    ``models`` takes an id, ``"id=weight"`` strings, ``{id: weight}`` or :class:`ModelSpec` tables
    (with rpm/tpm/prices/base_url). With no models: ``$HFPREF_MODEL``, else a provider default when
    an API key is set, else the local default model. Sampling parameters, ``concurrency`` (requests
    in flight over all models) and ``seed`` (routing) are those of :class:`GenerateConfig`.
    ``cache_dir`` holds the request cache (default ``~/.cache/hfpref``; ``cache=False`` bypasses
    it). ``max_cost`` is a hard cap in USD (at most one request's cost above it): once it is reached
    the map raises :class:`~hfpref.errors.BudgetExhausted` after the answers in flight have arrived
    and been cached (``on_budget="null"`` instead records the unsent completions as null, with the
    reason in ``generation.error``, and lets the map finish). Stages given the same ``budget_id``
    share one cap, in every process (``num_proc``). ``batch_api=True`` sends the requests through the
    endpoint's Batch API (half the price, answers within a day; the ``[provider]`` batch settings).
    """

    function = staticmethod(_generate)
    schema = SCHEMA

    def __new__(
        cls,
        models: Any = None,
        n: int = 4,
        *,
        system_prompt: str | None = None,
        temperature: float = 0.8,
        top_p: float | None = None,
        max_tokens: int = 1024,
        concurrency: int = 64,
        seed: int = 0,
        prompt_column: str | None = None,
        batch_api: bool = False,
        base_url: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 300.0,
        max_retries: int = 8,
        cache_dir: str | None = None,
        cache: bool = True,
        max_cost: float | None = None,
        budget_id: str | None = None,
        on_budget: str = "raise",
        config: GenerateConfig | None = None,
        provider: ProviderConfig | None = None,
    ) -> Generator:
        if config is None:
            config = GenerateConfig(
                models=models or [],
                n=n,
                system_prompt=system_prompt,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                concurrency=concurrency,
                seed=seed,
                prompt_column=prompt_column,
                batch_api=batch_api,
            )
        if not config.models:  # a copy: the caller's config (e.g. a RunConfig's section) stays as given
            config = dataclasses.replace(config, models=default_models("HFPREF_MODEL"))
        access = Access.of(
            provider,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            max_retries=max_retries,
            cache_dir=cache_dir,
            cache=cache,
            max_cost=max_cost,
            budget_id=budget_id,
            on_budget=on_budget,
        )
        spec = GenerateSpec(config, access)
        return super().__new__(cls, spec)  # type: ignore[return-value]

    @classmethod
    def from_file(cls, path: str | None) -> Generator:
        run = load_config(path)
        return cls(config=run.generate, provider=run.provider, max_cost=run.budget.max_cost_usd)


_DEFAULT: list[Generator] = []


async def generate(batch: Mapping[str, Any], indices: Any = None) -> dict[str, Any]:
    """``ds.map(hfpref.generate, batched=True)`` with the default Generator: configured by
    ``$HFPREF_CONFIG`` (a hfpref.toml) or ``./hfpref.toml`` when present, else by the environment."""
    if not _DEFAULT:
        _DEFAULT.append(Generator.from_file(default_config_path()))
    return await _DEFAULT[0](batch, indices)
