"""Reading a source's records: each record of a local ``.jsonl``/``.json`` file, or of anything
:func:`hfpref.stages.io.load_rows` reads (a Hub dataset id included), as a :class:`Field` that names its
line, record or row (1-based) and fails with one line (an :class:`~hfpref.errors.InputError`) saying
which field was not what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, overload

import orjson

from hfpref.errors import InputError

Message = dict[str, str]
TEXT_PARTS = ("text", "input_text", "output_text")  # content parts holding text (chat and Responses API)
ROLES = {"developer": "system"}  # Responses API roles that chat templates know under another name
MISSING: Any = object()  # the value of a field the record does not have


def _describe(value: Any) -> str:
    """A short description of a value for an error message."""
    if value is MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the string {value if len(value) <= 40 else value[:37] + '...'!r}"
    if isinstance(value, Mapping):
        keys = ", ".join(str(k) for k in list(value)[:8])
        return f"an object with keys [{keys}]"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return repr(value)[:40]


@dataclass(frozen=True, slots=True)
class Field:
    """A value of a source record, with its ``where`` (``file.jsonl line 3``) and ``path`` (``a.b[2].c``):
    ``field["key"]`` is a child; readers (:meth:`text`, ...) fail with one line naming both."""

    where: str
    path: str
    value: Any

    def __getitem__(self, key: str) -> Field:
        if not isinstance(self.value, Mapping):
            self.fail("an object")
        return Field(self.where, f"{self.path}.{key}" if self.path else key, self.value.get(key, MISSING))

    @property
    def null(self) -> bool:
        """Whether the value is null or missing."""
        return self.value is None or self.value is MISSING

    def fail(self, expected: str) -> NoReturn:
        """Raise the one-line :class:`InputError` for this field: where, which field, what was expected."""
        name = f"`{self.path}`" if self.path else "the record"
        raise InputError(f"{self.where}: {name}: expected {expected}, got {_describe(self.value)}")

    def items(self, *, optional: bool = False) -> list[Field]:
        """The entries of a list (``optional``: null or missing reads as an empty list)."""
        if optional and self.null:
            return []
        if not isinstance(self.value, list | tuple):
            self.fail("a list" + (" or null" if optional else ""))
        return [Field(self.where, f"{self.path}[{i}]", v) for i, v in enumerate(self.value)]

    @overload
    def text(self, *, optional: Literal[False] = False) -> str: ...
    @overload
    def text(self, *, optional: bool) -> str | None: ...
    def text(self, *, optional: bool = False) -> str | None:
        """A string (``optional``: None when null or missing)."""
        if optional and self.null:
            return None
        if not isinstance(self.value, str):
            self.fail("a string" + (" or null" if optional else ""))
        return self.value

    @overload
    def number(self, *, optional: Literal[False] = False) -> float: ...
    @overload
    def number(self, *, optional: bool) -> float | None: ...
    def number(self, *, optional: bool = False) -> float | None:
        """A finite number (``optional``: None when null or missing)."""
        if optional and self.null:
            return None
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail("a number" + (" or null" if optional else ""))
        return float(value)

    @overload
    def integer(self, *, choices: Sequence[int], optional: Literal[False] = False) -> int: ...
    @overload
    def integer(self, *, choices: Sequence[int], optional: bool) -> int | None: ...
    def integer(self, *, choices: Sequence[int], optional: bool = False) -> int | None:
        """An integer among ``choices`` (``optional``: None when null or missing)."""
        if optional and self.null:
            return None
        value = self.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
            allowed = f"{min(choices)}..{max(choices)}" if choices else "none"
            self.fail(f"an integer in {allowed}" + (" or null" if optional else ""))
        return value

    def message(self) -> Message:
        """One chat message as ``{"role", "content"}``: a list of content parts is joined (text parts
        only), and the Responses API role ``developer`` becomes ``system``."""
        role = self["role"].text()
        content = self["content"]
        if isinstance(content.value, list):
            texts = []
            for part in content.items():
                if part["type"].text() not in TEXT_PARTS:
                    part["type"].fail(f"a text content part ({', '.join(TEXT_PARTS)})")
                texts.append(part["text"].text())
            text = "".join(texts)
        else:
            text = content.text()
        return {"role": ROLES.get(role, role), "content": text}

    def messages(self, *, allow_text: bool = False) -> list[Message]:
        """A non-empty chat as a list of messages (``allow_text``: a string is one user message)."""
        if allow_text and isinstance(self.value, str):
            return [{"role": "user", "content": self.value}]
        items = self.items()
        if not items:
            self.fail("a non-empty list of messages")
        return [item.message() for item in items]


def _json_records(source: str, path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` per record of a JSON Lines file, or of a ``.json`` file holding one array."""
    if path.suffix.lower() == ".json":
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            data = None  # not one JSON document: read it as JSON Lines, as datasets does
        if isinstance(data, list):
            yield from ((f"{source} record {i}", value) for i, value in enumerate(data, start=1))
            return
        if data is not None:
            raise InputError(f"{source}: expected a JSON array of records or JSON Lines, got one JSON value")
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield f"{source} line {number}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{source} line {number}: not valid JSON ({exc})") from None


def read_records(source: str, *, split: str = "train", limit: int | None = None) -> Iterator[Field]:
    """The records of ``source``, each a :class:`Field` naming its line (JSON Lines), record (a JSON
    array) or row (anything else :func:`hfpref.stages.io.load_rows` reads: ``.parquet``, ``.csv``,
    ``save_to_disk`` folders, Hub dataset ids, of which ``split`` is read). ``limit``: the first N only.

    Local JSON is parsed here, record by record, rather than by ``datasets``: a record of the wrong
    shape then fails naming its line instead of the whole file failing Arrow's type inference.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        records: Iterator[tuple[str, Any]] = _json_records(source, path)
    else:
        from hfpref.stages.io import load_rows

        ds = load_rows(source, split=split)
        if limit is not None:
            ds = ds.select(range(min(limit, ds.num_rows)))
        records = ((f"{source} row {i}", row) for i, row in enumerate(ds, start=1))
    for count, (where, value) in enumerate(records, start=1):
        record = Field(where, "", value)
        if not isinstance(value, Mapping):
            record.fail("a JSON object")
        yield record
        if limit is not None and count >= limit:
            return
