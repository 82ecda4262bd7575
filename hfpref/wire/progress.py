"""Live accounting of requests, tokens and money, shown as one progress bar and a summary line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm


@dataclass
class Stats:
    """Counters of one Generator/Judge in this process. Tokens and ``cost_usd`` are those of the answers
    paid for here (retried failures included, cached answers not); ``cost_usd`` sums the known costs."""

    label: str
    requests: int = 0
    completions: int = 0
    cached: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unknown_cost: int = 0
    started: float = field(default_factory=time.monotonic)
    _bar: Any = None
    _postfix_at: float = 0.0

    def answer(self, prompt_tokens: int | None, completion_tokens: int | None, cost: float | None) -> None:
        """Count one answer that came back from an endpoint (paid, whether or not it is usable)."""
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0
        if cost is None:
            self.unknown_cost += 1
        else:
            self.cost_usd += cost

    def record(self, record: dict[str, Any]) -> None:
        """Count one completion record (as written to the ``generation`` column)."""
        self.completions += 1
        if record.get("cached"):
            self.cached += 1
        if record.get("error"):
            self.failed += 1
        self._tick()

    def _tick(self) -> None:
        if self._bar is None:
            self._bar = tqdm(
                desc=f"hfpref {self.label}", unit="req", disable=None, file=sys.stderr, dynamic_ncols=True
            )
        self._bar.update(1)
        now = time.monotonic()
        if now - self._postfix_at > 0.5:
            self._postfix_at = now
            self._bar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self) -> str:
        tokens = self.prompt_tokens + self.completion_tokens
        return f"tok={tokens:,} cost={self.cost_text()} retries={self.retries} failed={self.failed} cached={self.cached}"

    def cost_text(self) -> str:
        text = f"${self.cost_usd:.4f}"
        if self.unknown_cost:
            text += f" + unknown for {self.unknown_cost}"
        return text

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"hfpref {self.label}: {self.completions:,} completions ({self.cached:,} cached, {self.failed:,} failed), "
            f"{self.requests:,} requests sent, {self.retries:,} retries, "
            f"{self.prompt_tokens:,}+{self.completion_tokens:,} tokens, cost {self.cost_text()}, {elapsed:.1f} s"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=False)
            self._bar.close()
            self._bar = None
        if self.completions:
            print(self.summary(), file=sys.stderr)
