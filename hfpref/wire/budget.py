"""``max_cost`` as a hard cap: a ledger of spend and reservations shared by every process and stage of a job.

One row of a SQLite file per job (``budget.sqlite`` beside the request cache), updated in ``BEGIN
IMMEDIATE`` transactions, so ``num_proc`` workers and the generate and judge stages of one ``hfpref
run`` draw on the same money. Before a request is sent it *reserves* what it may cost:

* ``price_in``/``price_out`` configured: prompt tokens (over-estimated from the body's size) and
  ``max_tokens`` per completion at those prices, an upper bound;
* else the most a token has cost on this model so far in the job (``usage.cost`` over the answer's
  tokens), times the same token bound; or, without token counts, the most one completion has cost;
* else (nothing known yet): nothing is reserved, but the request goes out only when no other request
  of the job is in flight, so the first answers teach the ledger their price one at a time.

A request is sent when nothing else is in flight or its reservation fits under the cap beside the
others (else it waits for answers to settle); none is sent once the spend has reached the cap. The
spend therefore ends at most one request's cost above the cap, at any concurrency and ``num_proc``.
An answer settles its reservation with its real cost; a request that got no answer releases it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from hfpref.errors import BudgetExhausted
from hfpref.wire.cache import open_database

Sleep = Callable[[float], Awaitable[None]]
POLL_S = (0.01, 0.25)  # first and longest wait between two looks at the ledger while the cap is near


class Ledger:
    """The spend of one job (``job``) against ``limit_usd``, shared through the file at ``path``."""

    def __init__(self, limit_usd: float, path: Path, job: str) -> None:
        self.limit_usd = limit_usd
        self.job = job
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_database(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ledger (job TEXT PRIMARY KEY, spent REAL NOT NULL, "
            "reserved REAL NOT NULL, open INTEGER NOT NULL, refused INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS prices (job TEXT, model TEXT, per_token REAL, per_completion REAL, "
            "PRIMARY KEY (job, model))"
        )
        self._db.execute("INSERT OR IGNORE INTO ledger VALUES (?, 0, 0, 0, 0)", (job,))

    # -- reading -------------------------------------------------------------------------------
    def spent(self) -> float:
        return float(self._db.execute("SELECT spent FROM ledger WHERE job = ?", (self.job,)).fetchone()[0])

    def refused(self) -> int:
        """Completions not asked for because the cap was reached (in every process of the job)."""
        return int(self._db.execute("SELECT refused FROM ledger WHERE job = ?", (self.job,)).fetchone()[0])

    def _estimate(self, model: str, tokens: int, completions: int, priced: float | None) -> float | None:
        if priced is not None:
            return priced
        row = self._db.execute(
            "SELECT per_token, per_completion FROM prices WHERE job = ? AND model = ?", (self.job, model)
        ).fetchone()
        if row is None:
            return None
        per_token, per_completion = row
        if per_token is not None:
            return per_token * tokens
        return per_completion * completions

    # -- a request's life ----------------------------------------------------------------------
    async def reserve(
        self, model: str, tokens: int, completions: int, priced: float | None, sleep: Sleep
    ) -> float:
        """Reserve the expected cost of one request (see the module doc) and return it; wait while the
        cap is near and others are in flight; raise :class:`BudgetExhausted` once the cap is reached."""
        wait = POLL_S[0]
        while True:
            granted = self._try_reserve(model, tokens, completions, priced)
            if granted is not None:
                return granted
            await sleep(wait)
            wait = min(POLL_S[1], wait * 2)

    def _try_reserve(self, model: str, tokens: int, completions: int, priced: float | None) -> float | None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            spent, reserved, open_ = db.execute(
                "SELECT spent, reserved, open FROM ledger WHERE job = ?", (self.job,)
            ).fetchone()
            if spent >= self.limit_usd:
                db.execute("UPDATE ledger SET refused = refused + ? WHERE job = ?", (completions, self.job))
                refusal = BudgetExhausted(
                    f"budget of ${self.limit_usd:g} reached (${spent:.4f} spent)",
                    spent=spent,
                    limit=self.limit_usd,
                )
            else:
                refusal = None
                estimate = self._estimate(model, tokens, completions, priced)
                fits = estimate is not None and spent + reserved + estimate <= self.limit_usd
                if not (open_ == 0 or fits):
                    return None
                db.execute(
                    "UPDATE ledger SET reserved = reserved + ?, open = open + 1 WHERE job = ?",
                    (estimate or 0.0, self.job),
                )
        finally:
            db.execute("COMMIT")
        if refusal is not None:
            raise refusal
        return estimate or 0.0

    def settle(
        self, reserved: float, cost: float | None, model: str, tokens: int | None, completions: int
    ) -> None:
        """An answer came back: its ``cost`` is spent, its reservation freed, its price learnt. An answer
        whose cost is unknown (None) is counted at what it reserved, and teaches nothing."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE ledger SET spent = spent + ?, reserved = MAX(0, reserved - ?), open = open - 1 "
                "WHERE job = ?",
                (reserved if cost is None else cost, reserved, self.job),
            )
            if cost is None:
                return
            per_token = cost / tokens if tokens else None
            db.execute(
                "INSERT INTO prices VALUES (?, ?, ?, ?) ON CONFLICT (job, model) DO UPDATE SET "
                "per_token = CASE WHEN excluded.per_token IS NULL THEN per_token "
                "ELSE MAX(COALESCE(per_token, 0), excluded.per_token) END, "
                "per_completion = MAX(per_completion, excluded.per_completion)",
                (self.job, model, per_token, cost / max(1, completions)),
            )
        finally:
            db.execute("COMMIT")

    def release(self, reserved: float) -> None:
        """A request that got no answer (not paid): its reservation is freed."""
        self._db.execute(
            "UPDATE ledger SET reserved = MAX(0, reserved - ?), open = open - 1 WHERE job = ?",
            (reserved, self.job),
        )
