"""Live accounting of requests, tokens and money, shown as one progress bar and a summary line."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from hfpref.wire.answers import number

BATCH_ENDED = ("expired", "cancelled", "failed")


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
    # batch id -> (status, requests done, requests in it), as last seen (Batch API)
    batches: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    _bar: Any = None
    _postfix_at: float = 0.0
    _batch_line: str = ""

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

    def batch(self, batch: Mapping[str, Any]) -> None:
        """A batch as last seen (submitted, polled, ended): one progress line whenever the totals change."""
        counts = batch.get("request_counts")
        counts = counts if isinstance(counts, Mapping) else {}
        done = int((number(counts.get("completed")) or 0) + (number(counts.get("failed")) or 0))
        self.batches[str(batch["id"])] = (str(batch["status"]), done, int(number(counts.get("total")) or 0))
        line = f"hfpref {self.label}: {self.batch_text()}"
        if line != self._batch_line:
            self._batch_line = line
            tqdm.write(line, file=sys.stderr)

    def batch_text(self) -> str:
        """The batches of this stage: how many and where they stand, requests done, cost so far."""
        states = [status for status, _, _ in self.batches.values()]
        done = sum(d for _, d, _ in self.batches.values())
        total = sum(t for _, _, t in self.batches.values())
        ended = sum(s in BATCH_ENDED for s in states)
        waiting = len(states) - states.count("completed") - ended
        return (
            f"batches: {len(states)} submitted, {waiting} in progress, {states.count('completed')} completed"
            + (f", {ended} expired/cancelled/failed" if ended else "")
            + f"; {done:,}/{total:,} requests done; cost so far {self.cost_text()}"
        )

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
            + (
                f", {len(self.batches):,} batch{'es' if len(self.batches) > 1 else ''}"
                if self.batches
                else ""
            )
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=False)
            self._bar.close()
            self._bar = None
        if self.completions:
            print(self.summary(), file=sys.stderr)
