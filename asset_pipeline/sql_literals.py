"""Values written into SQL text, for DuckDB and LanceDB's filters alike.

Two reasons to write a value into the text instead of binding it as a parameter: LanceDB filters
take no parameters at all, and DuckDB 1.5 imports pandas before it binds any parameter, or
registers any Arrow table (0.2-0.3 s and ~40 MiB that a run would otherwise spend on it:
duckdb/duckdb#18658). A long list of strings is written as one literal that the query splits
(`split_list`): DuckDB parses a literal a few microseconds a value slower than it binds one, but
one long literal costs it next to nothing.
Quoting is SQL's own (a quote doubled), so no value can end its literal early.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from datetime import UTC, date, datetime


def string_literal(text: str) -> str:
    """`text` as a SQL string literal. A NUL cannot be written in one (DuckDB's parser ends the
    query text there): ValueError, so a caller binds such a value or refuses it by name."""
    if "\x00" in text:
        raise ValueError(f"no SQL literal for a string with a NUL character: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def writable(values: Iterable[object]) -> bool:
    """Every value can be written as a literal (no string holds a NUL)."""
    return not any(isinstance(v, str) and "\x00" in v for v in values)


def literal(value: object) -> str:
    """A scalar as a SQL literal: numbers as themselves, times as typed literals, NULL for None,
    anything else as a string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):  # numpy's integers too (their repr is np.int64(5))
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):  # repr gives nan or inf: names, not numbers, in SQL
            raise ValueError(f"no SQL literal for the number {number!r}")
        return repr(number)
    if isinstance(value, datetime):
        # An offset in the text is dropped by DuckDB's `timestamp` (LanceDB applies it): in UTC
        # both read the same instant.
        if value.utcoffset() is not None:
            value = value.astimezone(UTC)
        return f"timestamp '{value.isoformat()}'"
    if isinstance(value, date):
        return f"date '{value.isoformat()}'"
    return string_literal(str(value))


def literal_list(values: Iterable[object]) -> str:
    """Scalars as a comma-separated list, for ``IN (...)``."""
    return ", ".join(literal(v) for v in values)


# Control characters that no path, id or hash this project writes is expected to hold; a list of
# strings is joined by the first one that none of its values holds.
_SEPARATORS = "\x1f\x1e\x1d\x1c\x01\x02\x03\x04"


def split_list(values: list[str]) -> str | None:
    """Strings as one SQL expression for a list (``string_split('a<sep>b', chr(<sep>))``), for
    ``IN (select unnest(...))`` over thousands of values; None when every separator occurs in
    some value, or a value holds a NUL (the caller binds the list then)."""
    whole = "".join(values)
    if "\x00" in whole:
        return None
    for sep in _SEPARATORS:
        if sep not in whole:
            return f"string_split({string_literal(sep.join(values))}, chr({ord(sep)}))"
    return None
