"""Configuration: dataclasses whose field help doubles as CLI help, and the ``hfpref.toml`` loader.

Precedence is flags > file > env: the CLI builds a :class:`RunConfig` from the file (whose defaults
come from the environment) and then overrides the fields it was given flags for.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfpref.errors import ConfigError, register_secret

PROMPT_COLUMNS = ("prompt", "input", "question")  # looked for in this order when no prompt column is set

OPENROUTER_URL = "https://openrouter.ai/api/v1"
DEFAULT_LOCAL_MODEL = "local:Qwen/Qwen2.5-0.5B-Instruct"
KEY_REQUIRED_HOSTS = ("openrouter.ai", "api.openai.com")
DEFAULT_PROVIDER_MODEL = "openai/gpt-4o-mini"
API_KEY_ENVS = ("HFPREF_API_KEY", "OPENROUTER_API_KEY", "OPENAI_API_KEY")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BATCH_FALLBACKS = ("batch", "online")


def _help(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    if "default_factory" in kwargs:
        return field(metadata={"help": text}, **kwargs)
    return field(default=default, metadata={"help": text}, **kwargs)


def help_for(cls: type, name: str) -> str:
    """The help text of field ``name`` of dataclass ``cls`` (used verbatim by the CLI)."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


def cache_root() -> Path:
    """``$HFPREF_CACHE``, else ``$XDG_CACHE_HOME/hfpref``, else ``~/.cache/hfpref``."""
    if os.environ.get("HFPREF_CACHE"):
        return Path(os.environ["HFPREF_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hfpref"


def check_url(value: Any, where: str) -> None:
    """An endpoint must be an http(s) URL with a host (``http://127.0.0.1:8000/v1``)."""
    if value is None:
        return
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{where}: expected an http(s) URL such as https://openrouter.ai/api/v1, got {value!r}"
        )


def check_env_name(value: Any, where: str) -> None:
    """``api_key_env`` names a variable; the value is never echoed, as it may be the key pasted by mistake."""
    if value is not None and (not isinstance(value, str) or not ENV_NAME.match(value)):
        raise ConfigError(
            f"{where}: expected the name of an environment variable (like OPENROUTER_API_KEY), "
            "not the key itself or another value"
        )


def env_api_key(env_name: str | None) -> str | None:
    """The API key from ``env_name``, else from the first of ``API_KEY_ENVS`` that is set."""
    names = (env_name,) if env_name else API_KEY_ENVS
    for name in names:
        value = os.environ.get(name)
        if value:
            register_secret(value)
            return value
    return None


def default_config_path() -> str | None:
    """``$HFPREF_CONFIG``, else ``./hfpref.toml`` when it exists, else None (environment only)."""
    if os.environ.get("HFPREF_CONFIG"):
        return os.environ["HFPREF_CONFIG"]
    return "hfpref.toml" if os.path.exists("hfpref.toml") else None


def default_models(env_name: str) -> list[ModelSpec]:
    """Models to use when none are configured: ``$env_name``, else a provider default when an API key
    is set, else the local default model (``$HFPREF_LOCAL_MODEL`` overrides it)."""
    if os.environ.get(env_name):
        return parse_models([m.strip() for m in os.environ[env_name].split(",") if m.strip()])
    if os.environ.get("HFPREF_BASE_URL"):
        raise ConfigError(f"HFPREF_BASE_URL is set but no model is named: pass --model or set {env_name}")
    if env_api_key(None):
        return [ModelSpec(id=DEFAULT_PROVIDER_MODEL)]
    local = os.environ.get("HFPREF_LOCAL_MODEL") or DEFAULT_LOCAL_MODEL
    return [ModelSpec(id=local if local.startswith("local:") else f"local:{local}")]


@dataclass
class ModelSpec:
    """One model to route requests to."""

    id: str = _help("Model id: a provider id (`deepseek/deepseek-r1`) or `local:PATH_OR_HUB_ID`.")
    weight: float = _help("Share of completions routed to this model (relative to the others).", 1.0)
    rpm: float | None = _help("Requests per minute allowed for this model (none: unlimited).", None)
    tpm: float | None = _help("Tokens per minute allowed for this model (none: unlimited).", None)
    base_url: str | None = _help("Endpoint for this model only (default: the provider's).", None)
    api_key_env: str | None = _help("Environment variable holding this model's API key.", None)
    price_in: float | None = _help("USD per million prompt tokens, when the provider reports no cost.", None)
    price_out: float | None = _help(
        "USD per million completion tokens, when the provider reports no cost.", None
    )
    n_param: bool | None = _help(
        "Ask for several completions in one request with the API's `n` (none: try, fall back if refused).",
        None,
    )

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigError(f"model id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.weight, int | float) or self.weight <= 0:
            raise ConfigError(f"model {self.id}: weight must be a positive number, got {self.weight!r}")
        for name in ("rpm", "tpm", "price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ConfigError(f"model {self.id}: {name} must be a non-negative number, got {value!r}")
        check_env_name(self.api_key_env, f"model {self.id}: api_key_env")
        check_url(self.base_url, f"model {self.id}: base_url")

    @property
    def is_local(self) -> bool:
        return self.id.startswith("local:")


def parse_models(models: Any) -> list[ModelSpec]:
    """Accept ``"id"``, ``"id=weight"``, ``{id: weight}``, or a list of those / dicts / ModelSpec."""
    if models is None:
        return []
    if isinstance(models, str | ModelSpec):
        models = [models]
    if isinstance(models, dict):
        models = [{"id": k, "weight": v} for k, v in models.items()]
    specs: list[ModelSpec] = []
    for item in models:
        if isinstance(item, ModelSpec):
            specs.append(item)
        elif isinstance(item, str):
            model_id, _, weight = item.rpartition("=") if "=" in item else (item, "", "")
            try:
                specs.append(ModelSpec(id=model_id, weight=float(weight) if weight else 1.0))
            except ValueError:
                raise ConfigError(f"--model {item!r}: expected ID or ID=WEIGHT with a number") from None
        elif isinstance(item, dict):
            unknown = set(item) - {f.name for f in dataclasses.fields(ModelSpec)}
            if unknown:
                raise ConfigError(f"model {item.get('id')!r}: unknown key(s) {sorted(unknown)}")
            specs.append(ModelSpec(**item))
        else:
            raise ConfigError(f"models: expected an id, ID=WEIGHT or a table, got {item!r}")
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"models: each model may be listed once, got {ids}")
    return specs


@dataclass
class ProviderConfig:
    """The OpenAI-compatible endpoint used by every model that names none of its own."""

    base_url: str | None = _help("Endpoint URL (env HFPREF_BASE_URL; default: OpenRouter).", None)
    api_key_env: str | None = _help(
        "Environment variable holding the API key (default: HFPREF_API_KEY, OPENROUTER_API_KEY, OPENAI_API_KEY).",
        None,
    )
    timeout_s: float = _help("Seconds one attempt of a request may take in all before it is retried.", 300.0)
    connect_timeout_s: float = _help("Seconds to wait for a connection to the endpoint.", 10.0)
    read_timeout_s: float = _help(
        "Seconds without a byte from the endpoint before an attempt is given up (a slow model's answer "
        "arrives at once when done, so this bounds generation time too unless the endpoint streams).",
        240.0,
    )
    max_retries: int = _help(
        "Retries of a request after 429, 5xx, timeouts, dropped connections or empty answers.", 8
    )
    max_retry_time_s: float = _help(
        "Seconds after which a failing request is not retried again (online; a batch line is retried "
        "max_retries times).",
        900.0,
    )
    batch_max_requests: int = _help("Batch API: most requests in one input file (OpenAI: 50,000).", 50_000)
    batch_max_bytes: int = _help("Batch API: largest input file in bytes (OpenAI: 200 MB).", 200_000_000)
    batch_window: str = _help("Batch API: the completion_window asked for (OpenAI: 24h).", "24h")
    batch_quiet_s: float = _help(
        "Batch API: a file is submitted once no new request joined it for this many seconds (or it is full).",
        1.0,
    )
    batch_poll_s: float = _help(
        "Batch API: longest wait between two looks at a pending batch (the first come sooner).", 60.0
    )
    batch_discount: float = _help(
        "Batch API: the batch price as a share of price_in/price_out, for answers without usage.cost "
        "(OpenAI: 0.5).",
        0.5,
    )
    batch_in_flight: int = _help(
        "Batch API: most requests waiting in batches at once (concurrency, rpm and tpm do not apply); "
        "more wait until a batch ends.",
        250_000,
    )
    batch_fallback: str = _help(
        "Batch API: where a request that failed in a batch (an error, an expired or cancelled batch) is "
        "tried again: batch (the next batch) or online (chat completions, at the online price).",
        "batch",
    )

    def __post_init__(self) -> None:
        check_env_name(self.api_key_env, "provider.api_key_env")
        check_url(self.base_url, "provider.base_url")
        for name in ("timeout_s", "connect_timeout_s", "read_timeout_s", "max_retry_time_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"provider.{name} must be a number of seconds > 0, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"provider.max_retries must be an integer >= 0, got {self.max_retries!r}")
        self._check_batch()

    def _check_batch(self) -> None:
        for name in ("batch_max_requests", "batch_max_bytes", "batch_in_flight"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"provider.{name} must be an integer >= 1, got {value!r}")
        for name in ("batch_quiet_s", "batch_poll_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"provider.{name} must be a number of seconds > 0, got {value!r}")
        if not isinstance(self.batch_discount, int | float) or not 0 < self.batch_discount <= 1:
            raise ConfigError(f"provider.batch_discount must be in (0, 1], got {self.batch_discount!r}")
        if not isinstance(self.batch_window, str) or not self.batch_window.strip():
            raise ConfigError(
                f"provider.batch_window must be a duration such as 24h, got {self.batch_window!r}"
            )
        if self.batch_fallback not in BATCH_FALLBACKS:
            raise ConfigError(f"provider.batch_fallback must be batch or online, got {self.batch_fallback!r}")

    def endpoint(self, spec: ModelSpec) -> str:
        url = spec.base_url or self.base_url or os.environ.get("HFPREF_BASE_URL") or OPENROUTER_URL
        check_url(url, "HFPREF_BASE_URL")  # the others were checked when set
        return url.rstrip("/")

    def key_env(self, spec: ModelSpec) -> str | None:
        return spec.api_key_env or self.api_key_env


@dataclass
class GenerateConfig:
    """What `hfpref generate` asks of the models."""

    models: list[ModelSpec] = _help(
        "Models with weights, e.g. `deepseek/deepseek-r1=2` (env HFPREF_MODEL; default: a local model "
        "without key or endpoint).",
        default_factory=list,
    )
    n: int = _help("Completions per prompt.", 4)
    system_prompt: str | None = _help("System prompt text (the CLI takes a file).", None)
    temperature: float = _help("Sampling temperature.", 0.8)
    top_p: float | None = _help("Nucleus sampling probability mass (none: the endpoint's default).", None)
    max_tokens: int = _help("Most tokens per completion.", 1024)
    concurrency: int = _help("Requests in flight at once, over all models.", 64)
    seed: int = _help("Seed of the weighted routing of completions to models.", 0)
    prompt_column: str | None = _help("Column holding the prompt (default: prompt, input or question).", None)
    batch_api: bool = _help(
        "Send the requests through the endpoint's Batch API (Files + Batches: half the price, answers "
        "within the batch window, up to 24 h; resumable).",
        False,
    )

    def __post_init__(self) -> None:
        self.models = parse_models(self.models)
        if not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"generate.n must be an integer >= 1, got {self.n!r}")
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"generate.temperature must be in [0, 2], got {self.temperature!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"generate.top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"generate.max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"generate.concurrency must be an integer >= 1, got {self.concurrency!r}")


@dataclass
class JudgeConfig:
    """How `hfpref judge` scores completions."""

    models: list[ModelSpec] = _help(
        "Judge models; several form a panel (env HFPREF_JUDGE_MODEL; default like generate).",
        default_factory=list,
    )
    mode: str = _help("pointwise, pairwise or stepwise.", "pointwise")
    prompt: str | None = _help(
        "Built-in prompt name (correctness, helpfulness, reasoning) or a prompt file.", None
    )
    swap: bool = _help("Pairwise: judge every pair in both orders (position-bias check).", True)
    scale: int = _help("Pointwise/stepwise rubric scale: scores are 1..scale, normalised to [0, 1].", 10)
    aggregate: str = _help("Panel aggregation: mean or majority.", "mean")
    temperature: float = _help("Judge sampling temperature.", 0.0)
    max_tokens: int = _help("Most tokens per judge answer.", 1024)
    concurrency: int = _help("Judge requests in flight at once.", 64)
    structured_output: bool = _help("Ask the endpoint for JSON-schema structured output.", False)
    reasoning: bool = _help(
        "Show the judge each completion's reasoning (the `reasoning` column) before its answer.", False
    )
    batch_api: bool = _help(
        "Send the judge requests through the endpoint's Batch API (half the price, up to 24 h; a format "
        "reminder is a second, smaller batch).",
        False,
    )

    #: The judge modes, as the config check knows them: the names of the table of modes,
    #: ``hfpref.stages.judge_modes.MODES`` (the stages sit above this module; a test keeps them equal).
    MODES = ("pointwise", "pairwise", "stepwise")

    def __post_init__(self) -> None:
        self.models = parse_models(self.models)
        if self.mode not in self.MODES:
            names = f"{', '.join(self.MODES[:-1])} or {self.MODES[-1]}"
            raise ConfigError(f"judge.mode must be {names}, got {self.mode!r}")
        if self.aggregate not in ("mean", "majority"):
            raise ConfigError(f"judge.aggregate must be mean or majority, got {self.aggregate!r}")
        if not isinstance(self.scale, int) or self.scale < 2:
            raise ConfigError(f"judge.scale must be an integer >= 2, got {self.scale!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"judge.concurrency must be an integer >= 1, got {self.concurrency!r}")


@dataclass
class CurateConfig:
    """How scored rows become preference configs."""

    formats: list[str] = _help(
        "Configs to write: dpo, sft, kto, grpo, step_dpo, stepwise.",
        default_factory=lambda: ["dpo", "sft", "kto", "grpo"],
    )
    strategy: str = _help("DPO pairing: best_worst, all_pairs or stratified.", "best_worst")
    min_margin: float = _help("DPO: smallest score gap between chosen and rejected.", 0.0)
    threshold: float = _help("SFT approval / KTO desirable score (scores are in [0, 1]).", 0.7)
    high: float = _help("Stratified DPO: chosen completions score at least this.", 0.7)
    low: float = _help("Stratified DPO: rejected completions score at most this.", 0.3)
    test_size: float = _help("Fraction of prompts in the test split (0 for no test split).", 0.1)
    seed: int = _help("Seed of the train/test split.", 0)
    style: str = _help(
        "conversational (message lists where the input prompt is one) or standard (plain strings).",
        "conversational",
    )
    step_threshold: float = _help("step_dpo / stepwise: a step scoring at least this is correct.", 0.5)
    reasoning: str = _help(
        "The models' reasoning: drop (completions only) or inline (`<think>` reasoning `</think>` before "
        "each completion that has some, as R1/Qwen3 write it; never in step_dpo/stepwise).",
        "drop",
    )

    def __post_init__(self) -> None:
        known = {"dpo", "sft", "kto", "grpo", "step_dpo", "stepwise"}
        if isinstance(self.formats, str):
            self.formats = [f.strip() for f in self.formats.split(",") if f.strip()]
        bad = [f for f in self.formats if f not in known]
        if bad or not self.formats:
            raise ConfigError(f"curate.formats: expected some of {sorted(known)}, got {self.formats!r}")
        if self.strategy not in ("best_worst", "all_pairs", "stratified"):
            raise ConfigError(
                f"curate.strategy must be best_worst, all_pairs or stratified, got {self.strategy!r}"
            )
        if self.style not in ("conversational", "standard"):
            raise ConfigError(f"curate.style must be conversational or standard, got {self.style!r}")
        if self.reasoning not in ("drop", "inline"):
            raise ConfigError(f"curate.reasoning must be drop or inline, got {self.reasoning!r}")
        if not 0 <= self.test_size < 1:
            raise ConfigError(f"curate.test_size must be in [0, 1), got {self.test_size!r}")
        for name in ("min_margin", "threshold", "high", "low", "step_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"curate.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.low > self.high:
            raise ConfigError(f"curate.low ({self.low}) must not exceed curate.high ({self.high})")


@dataclass
class HubConfig:
    """Where `hfpref push` sends the folder."""

    repo_id: str | None = _help("Dataset repo id, `user/name`.", None)
    private: bool = _help("Create the repo private.", False)
    license: str | None = _help("License written in the card (none: `other`, no rights claimed).", None)


@dataclass
class BudgetConfig:
    max_cost_usd: float | None = _help("Stop sending requests once this many USD are spent.", None)

    def __post_init__(self) -> None:
        if self.max_cost_usd is not None and self.max_cost_usd < 0:
            raise ConfigError(f"budget.max_cost_usd must be >= 0, got {self.max_cost_usd!r}")


@dataclass
class RunConfig:
    """A whole `hfpref.toml`."""

    provider: ProviderConfig = field(default_factory=ProviderConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    engine: str = _help(
        "Where generate, judge and run map their stages: local (datasets.map on this machine) or ray (a Ray "
        "cluster: ray.init(), which honours RAY_ADDRESS; pip install 'hfpref[ray]'). Default: $HFPREF_ENGINE, "
        "else local.",
        default_factory=lambda: os.environ.get("HFPREF_ENGINE") or "local",
    )

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")


ENGINES = ("local", "ray")
RUN_KEYS = ("engine",)  # the keys of hfpref.toml outside any section (written before the first one)


SCALAR_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _fits(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def _check_type(section: str, name: str, annotation: Any, value: Any) -> None:
    """A TOML value of the wrong type for a scalar field (``[judge] swap = "yes"``) is a ConfigError."""
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    scalars = [kind for kind in kinds if kind in SCALAR_TYPES]  # lists and tables: checked by their class
    if scalars and not any(_fits(value, kind) for kind in scalars):
        wanted = " or ".join(SCALAR_TYPES[kind] for kind in scalars)
        raise ConfigError(f"[{section}] {name}: expected {wanted}, got {value!r}")


def _build(cls: type, table: Any, section: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table, got {table!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"[{section}]: unknown key(s) {unknown}; expected some of {sorted(names)}")
    hints = typing.get_type_hints(cls)
    for name, value in table.items():
        _check_type(section, name, hints[name], value)
    try:
        return cls(**table)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


def load_config(path: str | os.PathLike[str] | None) -> RunConfig:
    """Read a `hfpref.toml` (none: defaults from the environment) and check every key and value."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    classes = {
        f.name: f.default_factory  # type: ignore[misc]
        for f in dataclasses.fields(RunConfig)
        if f.name not in RUN_KEYS
    }
    unknown = sorted(set(data) - set(classes) - set(RUN_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown section(s) {unknown}; expected some of {sorted(classes)} (and the key "
            f"{', '.join(RUN_KEYS)} before them)"
        )
    keys = {name: data.pop(name) for name in RUN_KEYS if name in data}
    for name, value in keys.items():
        _check_type("top level", name, str, value)
    built = {name: _build(classes[name], table, name) for name, table in data.items()}
    return RunConfig(**built, **keys)


def example_config() -> str:
    """The commented `hfpref.toml` that `hfpref example` prints."""
    return (Path(__file__).parent / "prompts" / "example.toml").read_text(encoding="utf-8")
