"""What generation and judging share: being a ``datasets.map`` function, and reading prompts.

A stage object (:class:`~hfpref.generate.Generator`, :class:`~hfpref.judge.Judge`) is a
``functools.partial`` of an ``async def`` over a picklable spec. That is what makes
``inspect.iscoroutinefunction(stage)`` true on Python 3.11 (an instance with ``async def __call__``
is not seen as one), so ``datasets`` runs it with its async map and keeps many batches in flight;
it also pickles (``num_proc``) and hashes (datasets' fingerprint) through the spec alone.

A stage's output columns have a fixed Arrow type (its ``schema``; ``features`` for ``map(features=...)``).
Batched results are :class:`TypedColumn` lists that hand datasets that type, so that a first batch
whose errors, costs or scores are all null does not fix those columns as ``null`` for the rest of the
map.

The same function serves ``batched=True`` and ``batched=False`` (:func:`is_single_row` tells them
apart), with or without ``with_indices=True`` (then errors name rows by their index in the dataset).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from hfpref.config import (
    KEY_REQUIRED_HOSTS,
    PROMPT_COLUMNS,
    ModelSpec,
    ProviderConfig,
    cache_root,
    env_api_key,
)
from hfpref.errors import ConfigError, InputError
from hfpref.wire.budget import Ledger
from hfpref.wire.cache import RequestCache
from hfpref.wire.client import ChatClient
from hfpref.wire.progress import Stats

_CLIENTS: dict[str, ChatClient] = {}


@dataclass(frozen=True)
class ClientHooks:
    """What an engine puts under the clients built in its worker processes (Ray's actors); None: the
    client's own. ``transport(provider, concurrency)``: the endpoint transport (e.g. HTTP behind a
    cluster-wide permit; the Batch API keeps its own); ``cache(path)``: the request cache of file
    ``path`` (e.g. one reached through an actor on the driver's node), with the RequestCache methods the
    client calls; ``ledger(limit_usd, path, job)``: the ``max_cost`` ledger, with
    :class:`~hfpref.wire.budget.Ledger`'s methods; ``stats(label)``: the client's counters (a
    :class:`~hfpref.wire.progress.Stats`)."""

    transport: Callable[[ProviderConfig, int], Any] | None = None
    cache: Callable[[Path], Any] | None = None
    ledger: Callable[[float, Path, str], Any] | None = None
    stats: Callable[[str], Stats] | None = None


_HOOKS = ClientHooks()


def set_client_hooks(hooks: ClientHooks | None) -> None:
    """Install (or with None, remove) the hooks of this process's new clients."""
    global _HOOKS
    _HOOKS = hooks or ClientHooks()


class Stage(functools.partial):  # type: ignore[type-arg]
    """Base of the ready-to-map stage objects: ``partial(async_fn, spec)`` with a readable repr.

    A subclass sets ``function`` to its ``async def (spec, batch)``.
    """

    function: Callable[..., Any]

    def __new__(cls, spec: Any) -> Stage:
        return super().__new__(cls, cls.function, spec)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # arguments were consumed by __new__
        pass

    @property
    def spec(self) -> Any:
        return self.args[0]

    @property
    def schema(self) -> pa.Schema:
        """The Arrow type of each column the stage adds."""
        raise NotImplementedError

    @property
    def features(self) -> Any:
        """The stage's output columns as :class:`datasets.Features`: a non-batched ``map`` takes
        ``features=Features({**ds.features, **stage.features})`` (batched results carry their types)."""
        from datasets import Features

        return Features.from_arrow_schema(self.schema)

    def __reduce__(self) -> tuple[Any, ...]:
        # The class by reference and the spec by value: pickling for ``num_proc`` stays small, and
        # datasets' fingerprint (dill, which serialises a function's code) skips the stage's code.
        return (_rebuild, (type(self), self.spec))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class TypedColumn(list):  # type: ignore[type-arg]
    """A batch of one output column: a plain list to the code that reads it, which also carries the
    column's Arrow type.

    datasets types a new column from the first batch it writes, so a first batch without a failure
    would make ``generation[].error`` a ``null`` column and the first error after it a cast failure.
    Its writer builds each column with ``pyarrow.array``, which builds an object with
    ``__arrow_array__`` through that method: the column gets the stage's type whatever it holds.
    """

    def __init__(self, values: Any, arrow_type: pa.DataType) -> None:
        super().__init__(values)
        self.arrow_type = arrow_type

    def __arrow_array__(self, type: pa.DataType | None = None) -> pa.Array:
        return pa.array(list(self), type=type or self.arrow_type)


def typed_columns(columns: Mapping[str, list[Any]], schema: pa.Schema) -> dict[str, list[Any]]:
    """A batched result with each column typed by ``schema``."""
    return {name: TypedColumn(values, schema.field(name).type) for name, values in columns.items()}


def join_columns(parts: list[Mapping[str, list[Any]]]) -> dict[str, list[Any]]:
    """Batched results one after the other, each column keeping its :class:`TypedColumn` type."""
    joined: dict[str, list[Any]] = {}
    for name, first in parts[0].items():
        values = [value for part in parts for value in part[name]]
        joined[name] = TypedColumn(values, first.arrow_type) if isinstance(first, TypedColumn) else values
    return joined


def _rebuild(cls: type[Stage], spec: Any) -> Stage:
    return Stage.__new__(cls, spec)


def new_run_id() -> str:
    return uuid.uuid4().hex


BUDGET_STOPS = ("raise", "null")  # what a stage does once max_cost is reached


@dataclass
class Access:
    """How a stage reaches its models, the same for Generator and Judge: the endpoint, the request cache
    and the budget. Picklable; ``run_id`` keys the stage's client in each process."""

    provider: ProviderConfig = field(default_factory=ProviderConfig)
    cache_dir: str | None = None
    use_cache: bool = True
    max_cost: float | None = None
    run_id: str = field(default_factory=new_run_id)
    budget_id: str | None = None  # the ledger shared with other stages of a job (default: run_id)
    on_budget: str = "raise"

    def __post_init__(self) -> None:
        if self.on_budget not in BUDGET_STOPS:
            raise ConfigError(f"on_budget must be one of {', '.join(BUDGET_STOPS)}, got {self.on_budget!r}")

    @classmethod
    def of(cls, provider: ProviderConfig | None, *, cache: bool, **options: Any) -> Access:
        """From a stage's keyword arguments: ``provider``, else one built from ``base_url``,
        ``api_key_env``, ``timeout_s`` and ``max_retries``; ``cache`` is ``use_cache``."""
        endpoint = {k: options.pop(k) for k in ("base_url", "api_key_env", "timeout_s", "max_retries")}
        return cls(provider or ProviderConfig(**endpoint), use_cache=cache, **options)


def client_for(
    access: Access, label: str, models: list[ModelSpec], concurrency: int, **client_options: Any
) -> ChatClient:
    """The process-wide client of one stage object (rebuilt in each ``num_proc`` worker).

    ``max_cost`` is kept by the ledger of job ``access.budget_id`` (default: the stage's own ``run_id``):
    stages given the same job draw on the same money, in every process."""
    client = _CLIENTS.get(access.run_id)
    if client is None:
        provider = access.provider
        for spec in models:
            check_credentials(provider, spec)
        hooks = _HOOKS
        if hooks.transport is not None and not client_options.get("batch_api"):
            client_options.setdefault("transport", hooks.transport(provider, concurrency))
        root = _cache_dir(access.cache_dir)
        cache_path = root / "requests.sqlite" if access.use_cache else None
        budget_path = root / "budget.sqlite"
        job = access.budget_id or access.run_id
        client = ChatClient(
            provider=provider,
            models=models,
            concurrency=concurrency,
            cache=hooks.cache(cache_path) if hooks.cache and cache_path else RequestCache(cache_path),
            stats=(hooks.stats or Stats)(label),
            budget=None
            if access.max_cost is None
            else (hooks.ledger or Ledger)(access.max_cost, budget_path, job),
            budget_nulls=access.on_budget == "null",
            **client_options,
        )
        _CLIENTS[access.run_id] = client
    return client


def _cache_dir(cache_dir: str | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else cache_root()


def budget_ledger(max_cost: float, cache_dir: str | None, job: str) -> Ledger:
    """The ledger of job ``job`` in the budget file beside the request cache."""
    return Ledger(max_cost, _cache_dir(cache_dir) / "budget.sqlite", job)


def check_credentials(provider: ProviderConfig, spec: ModelSpec) -> None:
    """A hosted endpoint without a key fails here, before any row is read."""
    if spec.is_local:
        return
    url = provider.endpoint(spec)
    if any(host in url for host in KEY_REQUIRED_HOSTS) and env_api_key(provider.key_env(spec)) is None:
        names = provider.key_env(spec) or "HFPREF_API_KEY, OPENROUTER_API_KEY or OPENAI_API_KEY"
        raise ConfigError(f"model {spec.id}: {url} needs an API key; set {names} (or use a local: model)")


def prompt_column(columns: Any, configured: str | None) -> str:
    """The prompt column: the configured one, else the first of prompt/input/question present."""
    names = list(columns)
    if configured:
        if configured not in names:
            raise InputError(f"prompt column {configured!r} not found; columns are {names}")
        return configured
    for name in PROMPT_COLUMNS:
        if name in names:
            return name
    raise InputError(
        f"no prompt column: expected one of {list(PROMPT_COLUMNS)} (or --prompt-column), got {names}"
    )


def is_single_row(batch: Mapping[str, Any], column: str) -> bool:
    """True for a ``batched=False`` row: its prompt is a string or one message list."""
    value = batch[column]
    return isinstance(value, str) or (isinstance(value, list) and bool(value) and isinstance(value[0], dict))


def to_messages(
    prompt: Any, where: str, column: str, system_prompt: str | None = None
) -> list[dict[str, str]]:
    """A prompt (string or message list) as chat messages, checked; ``where`` names the row."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError(
                f"{where}: column {column!r} is empty; expected a non-empty string or message list"
            )
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and prompt:
        messages = []
        for i, message in enumerate(prompt):
            if (
                not isinstance(message, Mapping)
                or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)
            ):
                raise InputError(
                    f"{where}: column {column!r}, message {i} must be {{'role': str, 'content': str}}, got {message!r:.80}"
                )
            messages.append({"role": message["role"], "content": message["content"]})
    else:
        raise InputError(
            f"{where}: column {column!r} must be a non-empty string or message list, got {prompt!r:.80}"
        )
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def row_label(batch: Mapping[str, Any], i: int, single: bool, indices: Any = None) -> str:
    """How an error names row ``i`` of a batch: its ``id``, else its index in the dataset when
    ``map(..., with_indices=True)`` passed ``indices``, else its place in the batch."""
    ids = batch.get("id") if "id" in batch else None
    if ids is not None:
        return f"row id={ids if single else ids[i]!r}"
    if indices is not None:
        return f"row {indices if single else indices[i]}"
    return "row" if single else f"row {i} of a batch"


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {path} is not UTF-8 text") from None
