"""Write simulated studies as Psych-201 files (JSONL, or JSONL inside a zip), reproducibly."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from psych201.atomic import write_atomic

#: Timestamp written into zip entries: a fixed one keeps the archive byte-reproducible.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_REQUIRED = ("text", "experiment", "participant")


def to_jsonl(records: Iterable[Mapping[str, Any]]) -> bytes:
    """The JSONL bytes of ``records``: one compact JSON object per line, UTF-8, ``\\n`` endings.

    Floats are written with Python's shortest round-trip ``repr``, so reading them back gives
    the very same doubles (the oracle relies on that). Non-finite numbers are refused because
    strict JSON readers reject them.
    """
    lines = []
    for n, record in enumerate(records, start=1):
        missing = [k for k in _REQUIRED if k not in record]
        if missing:
            raise ValueError(f"record {n} lacks required field(s) {', '.join(missing)}")
        try:
            line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # allow_nan=False raises on NaN/inf
            raise ValueError(f"record {n}: {exc}") from exc
        lines.append(line + "\n")
    return "".join(lines).encode("utf-8")


def write_study(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``records`` to ``path``: JSONL, or a zip holding one JSONL when it ends in ``.zip``.

    The zip's member is named after the file (``study.jsonl.zip`` and ``study.zip`` both hold
    ``study.jsonl``) and carries a fixed timestamp, so the same records give the same bytes
    (with the same zlib). The file is replaced atomically: a crash never leaves half a study.
    """
    path = Path(path)
    payload = to_jsonl(records)
    if path.suffix == ".zip":
        member = path.name.removesuffix(".zip")
        if not member.endswith(".jsonl"):
            member += ".jsonl"
        info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: _write_zip(f, info, payload))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: f.write(payload))
    return path


def _write_zip(f: BinaryIO, info: zipfile.ZipInfo, payload: bytes) -> None:
    with zipfile.ZipFile(f, "w") as zf:
        zf.writestr(info, payload, compresslevel=6)


