"""Strict JSON for everything the analyses, reports and CLI print or write (imports no psych201).

JSON has no NaN or Infinity (Python's ``json`` writes them by default, and strict parsers such as
``jq`` or JavaScript's ``JSON.parse`` reject the result): a missing number is ``null``. NumPy and
pandas scalars become plain numbers, not strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; non-finite numbers and missing values become ``None``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, datetime | date | pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def dumps(value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``value`` (see :func:`jsonable`); never emits NaN."""
    return json.dumps(jsonable(value), indent=indent, sort_keys=sort_keys, allow_nan=False,
                      ensure_ascii=False)
