"""A generated corpus of broken inputs: each gives its documented error or warning, never a crash.

Every case is checked three ways: ``on_error="fail"`` raises a :class:`DataError` with the
documented code and location; ``on_error="skip"`` counts it and still yields the good lines; and
the CLI (``data validate`` and ``data stats``) reports it with an exit code, without a traceback.
"""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from psych201.cli import app
from psych201.data.issues import ISSUE_CODES, DataError, IssueLog
from psych201.data.readers import iter_sessions

GOOD = {"text": "Pick <<A>> or <<B>>.", "experiment": "exp", "participant": 1}
GOOD_LINE = json.dumps(GOOD).encode() + b"\n"


def _line(**fields: object) -> bytes:
    record = {**GOOD, "text": "Then <<B>> and <<A>>.", "participant": 2, **fields}
    return json.dumps({k: v for k, v in record.items() if v is not _DROP}).encode() + b"\n"


_DROP = object()


def _folder(tmp: Path, content: bytes, name: str = "prompts.jsonl") -> Path:
    folder = tmp / "study"
    folder.mkdir()
    (folder / name).write_bytes(content)
    return folder


def _zip(tmp: Path, members: dict[str, bytes], name: str = "prompts.jsonl.zip") -> Path:
    folder = tmp / "study"
    folder.mkdir()
    with zipfile.ZipFile(folder / name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(zipfile.ZipInfo(member), data, compress_type=zipfile.ZIP_DEFLATED)
    return folder


def _truncated_zip(tmp: Path) -> Path:
    folder = _zip(tmp, {"prompts.jsonl": GOOD_LINE * 200})
    data = (folder / "prompts.jsonl.zip").read_bytes()
    (folder / "prompts.jsonl.zip").write_bytes(data[: len(data) // 2])
    return folder


def _corrupt_zip(tmp: Path) -> Path:
    # Central directory intact, compressed bytes damaged: the CRC (or inflate) fails mid-read.
    lines = b"".join(_line(participant=i) for i in range(2000))
    folder = _zip(tmp, {"prompts.jsonl": lines})
    path = folder / "prompts.jsonl.zip"
    data = bytearray(path.read_bytes())
    for offset in range(200, 400):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return folder


LFS = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)


def _parquet(tmp: Path, table: pa.Table) -> Path:
    folder = tmp / "study"
    folder.mkdir()
    pq.write_table(table, folder / "prompts.parquet")
    return folder


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    code: str | None  # the documented issue code; None: reads cleanly
    severity: str = "error"
    line: int | None = None  # where a line-level error is reported
    good: int = 1  # sessions still read under on_error="skip"


CASES = [
    # Containers.
    Case("truncated zip", _truncated_zip, "bad-zip", good=0),
    Case("empty zip file", lambda t: _folder(t, b"", "prompts.jsonl.zip"), "bad-zip", good=0),
    Case("corrupt zip data", _corrupt_zip, "read", good=0),
    Case("LFS pointer zip", lambda t: _folder(t, LFS, "prompts.jsonl.zip"), "lfs-pointer", good=0),
    Case("LFS pointer jsonl", lambda t: _folder(t, LFS), "lfs-pointer", line=1, good=0),
    Case("zip without jsonl", lambda t: _zip(t, {"README.md": b"hi"}), "no-jsonl", good=0),
    Case(
        "zip slip ..",
        lambda t: _zip(t, {"../../evil.jsonl": GOOD_LINE, "prompts.jsonl": GOOD_LINE}),
        "unsafe-member",
    ),
    Case(
        "zip slip absolute",
        lambda t: _zip(t, {"/etc/evil.jsonl": GOOD_LINE, "prompts.jsonl": GOOD_LINE}),
        "unsafe-member",
    ),
    Case(
        "macOS resource fork ignored",
        lambda t: _zip(t, {"prompts.jsonl": GOOD_LINE, "__MACOSX/._prompts.jsonl": b"\x00\x05"}),
        None,
    ),
    Case(
        "several jsonl members",
        lambda t: _zip(t, {"a/prompts.jsonl": GOOD_LINE, "b/prompts.jsonl": _line()}),
        None,
        good=2,
    ),
    Case(
        "corrupt parquet",
        lambda t: _folder(t, b"PAR1 not really parquet", "prompts.parquet"),
        "bad-parquet",
        good=0,
    ),
    Case(
        "parquet with numeric text",
        lambda t: _parquet(t, pa.table({"text": [1], "experiment": ["e"], "participant": ["1"]})),
        "text-type",
        line=1,
        good=0,
    ),
    # Encoding and line format.
    Case(
        "CRLF",
        lambda t: _folder(t, (GOOD_LINE + _line()).replace(b"\n", b"\r\n")),
        "crlf",
        "warning",
        good=2,
    ),
    Case("BOM", lambda t: _folder(t, b"\xef\xbb\xbf" + GOOD_LINE), "bom", "warning"),
    Case(
        "Latin-1 bytes",
        lambda t: _folder(
            t, GOOD_LINE + b'{"text": "caf\xe9 <<A>>", "experiment": "e", "participant": 3}\n'
        ),
        "encoding",
        line=2,
    ),
    Case("blank lines", lambda t: _folder(t, b"\n" + GOOD_LINE + b"\n\n"), None),
    # JSON.
    Case("invalid JSON", lambda t: _folder(t, GOOD_LINE + b'{"text": "<<A>>",\n'), "json", line=2),
    Case("JSON array", lambda t: _folder(t, GOOD_LINE + b"[1, 2]\n"), "not-object", line=2),
    Case(
        "deeply nested JSON",
        lambda t: _folder(t, GOOD_LINE + b"[" * 100_000 + b"]" * 100_000 + b"\n"),
        "json",
        line=2,
    ),
    Case(
        "duplicate field",
        lambda t: _folder(
            t,
            GOOD_LINE + b'{"text": "<<A>>", "text": "<<B>>", "experiment": '
            b'"e", "participant": 5}\n',
        ),
        "duplicate-field",
        line=2,
    ),
    Case(
        "bare NaN in metadata",
        lambda t: _folder(t, GOOD_LINE.replace(b"}", b', "age": NaN}')),
        None,
    ),
    Case(
        "NaN as text",
        lambda t: _folder(t, GOOD_LINE + _line(text=float("nan"))),
        "text-type",
        line=2,
    ),
    Case(
        "missing text", lambda t: _folder(t, GOOD_LINE + _line(text=_DROP)), "text-missing", line=2
    ),
    Case("numeric text", lambda t: _folder(t, GOOD_LINE + _line(text=42)), "text-type", line=2),
    Case(
        "missing participant",
        lambda t: _folder(t, GOOD_LINE + _line(participant=_DROP)),
        "field-missing",
        line=2,
    ),
    Case(
        "list participant",
        lambda t: _folder(t, GOOD_LINE + _line(participant=[1])),
        "field-type",
        line=2,
    ),
    Case(
        "lone surrogate",
        lambda t: _folder(
            t, GOOD_LINE + b'{"text": "<<\\ud800>>", "experiment": "e", "participant": 9}\n'
        ),
        "surrogate",
        line=2,
    ),
    # Markers.
    Case(
        "unbalanced marker", lambda t: _folder(t, GOOD_LINE + _line(text="a <<b")), "marker", line=2
    ),
    Case(
        "nested marker",
        lambda t: _folder(t, GOOD_LINE + _line(text="<<a <<b>> c>>")),
        "marker",
        line=2,
    ),
    Case("stray marker", lambda t: _folder(t, GOOD_LINE + _line(text="a >> b")), "marker", line=2),
    Case(
        "empty marker",
        lambda t: _folder(t, _line(text="x <<>> y << >>")),
        "empty-response",
        "warning",
    ),
    Case(
        "no responses",
        lambda t: _folder(t, _line(text="nothing marked")),
        "no-responses",
        "warning",
    ),
    # Keys and metadata.
    Case("duplicate key", lambda t: _folder(t, GOOD_LINE + GOOD_LINE), "duplicate-key", line=2),
    Case(
        "RT length mismatch",
        lambda t: _folder(t, _line(RTs=[500, 600, 700])),
        "rt-length",
        "warning",
    ),
    Case(
        "RTs as an unreadable string",
        lambda t: _folder(t, _line(RTs="[1159, 'slow']")),
        "rt-values",
        "warning",
    ),
    # Empty data: "0 responses" must not pass as success (issue 14, row 8).
    Case("empty prompts.jsonl", lambda t: _folder(t, b""), "empty", good=0),
    Case("only blank lines", lambda t: _folder(t, b"\n  \n\r\n"), "empty", good=0),
    Case("zip with an empty member", lambda t: _zip(t, {"prompts.jsonl": b""}), "empty", good=0),
    Case(
        "empty Parquet table",
        lambda t: _parquet(t, pa.table({k: pa.array([], pa.string()) for k in GOOD})),
        "empty",
        good=0,
    ),
    # Values Python itself refuses (issue 14, rows 6 and 10).
    Case(
        "5,000-digit integer",
        lambda t: _folder(t, GOOD_LINE + b'{"text": "<<A>>", "experiment": "e", "participant": '
                          + b"9" * 5000 + b"}\n"),
        "json",
        line=2,
    ),
    # Issue 24, row 4: an integer no float holds overflowed harmonise's float() (exit 70).
    Case("400-digit age", lambda t: _folder(t, GOOD_LINE + _line(age=10**400)), "json", line=2),
    Case("400-digit RT", lambda t: _folder(t, GOOD_LINE + _line(RTs=[10**400])), "json", line=2),
    Case("empty participant id", lambda t: _folder(t, GOOD_LINE + _line(participant="")),
         "field-type", line=2),
    Case("blank experiment id", lambda t: _folder(t, GOOD_LINE + _line(experiment="  ")),
         "field-type", line=2),
    # Paths.
    Case("missing path", lambda t: t / "does-not-exist", "not-found", good=0),
    Case("folder without a study", lambda t: _folder(t, b"x", "notes.txt"), "no-study", good=0),
]


def test_the_corpus_is_big_and_documented() -> None:
    assert len(CASES) >= 25
    assert {c.code for c in CASES if c.code} <= set(ISSUE_CODES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_library_reports_the_documented_issue(case: Case, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    log = IssueLog(log_first=0)
    if case.code is None or case.severity == "warning":
        sessions = list(iter_sessions(path, log=log))
        assert len(sessions) == case.good
        assert log.n_errors == 0
        if case.code is not None:
            assert log.counts[("warning", case.code)] >= 1
        else:
            assert log.n_warnings == 0
        return
    with pytest.raises(DataError) as info:
        list(iter_sessions(path, on_error="fail"))
    error = info.value
    assert error.code == case.code
    assert error.file.startswith(str(tmp_path))
    assert str(error).startswith(error.file)
    if case.line is not None:
        assert error.line == case.line
    if case.code in ("not-found", "no-study"):
        return  # nothing to skip to: discovery errors raise in both modes
    sessions = list(iter_sessions(path, on_error="skip", log=log))
    assert len(sessions) == case.good
    assert log.counts[("error", case.code)] >= 1
    assert any(issue.code == case.code for issue in log.issues)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_reports_without_a_traceback(case: Case, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    failed = case.code is not None and case.severity == "error"
    assert result.exit_code == (1 if failed else 0), result.output
    if case.code is not None:
        assert case.code in result.output  # the summary table names the issue
    stats = runner.invoke(app, ["data", "stats", str(path)])
    assert stats.exception is None or isinstance(stats.exception, SystemExit), stats.output
    assert stats.exit_code == (1 if failed else 0), stats.output  # invalid data: exit 1
    if failed:
        assert "error:" in stats.output


def test_strict_validation_turns_rt_mismatch_into_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD_LINE + _line(RTs=[1, 2, 3]))
    with pytest.raises(DataError) as info:
        list(iter_sessions(folder, strict_rts=True))
    assert info.value.code == "rt-length" and info.value.line == 2
    result = CliRunner().invoke(app, ["data", "validate", "--strict", str(folder)])
    assert result.exit_code == 1 and "3 RTs for 2 responses" in result.output


def test_a_100_mb_line_is_rejected_quickly_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    chunk = b"a" * (1 << 20)
    with path.open("wb") as stream:
        stream.write(GOOD_LINE)
        stream.write(b'{"experiment": "e", "participant": 7, "text": "')
        for _ in range(100):
            stream.write(chunk)
        stream.write(b'"}\n')
        stream.write(_line(participant=8))
    log = IssueLog(log_first=0)
    tracemalloc.start()
    try:
        sessions = list(iter_sessions(path, on_error="skip", log=log, max_line_bytes=8 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [s.participant for s in sessions] == ["1", "8"]
    assert [s.line for s in sessions] == [1, 3]
    assert log.counts[("error", "line-too-long")] == 1
    assert log.issues[0].line == 2 and "104,857,6" in log.issues[0].reason
    assert peak < 32 * 2**20  # never the whole 100 MB line
    with pytest.raises(DataError, match="over the limit"):
        list(iter_sessions(path, max_line_bytes=8 << 20))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no participants in this file"),
        (b"\n\n", "no participants in this file"),
        (GOOD_LINE + b'{"text": "<<A>>", "experiment": "e", "participant": ' + b"1" * 5000 + b"}\n",
         "a number too long to read"),
        (GOOD_LINE + _line(participant=""), "'participant' is an empty string"),
        (GOOD_LINE + b"[1, 2]\n", "the line is a list, not a JSON object"),
    ],
)
def test_each_message_is_one_plain_line_naming_file_and_line(
    content: bytes, message: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, content)
    result = CliRunner().invoke(app, ["data", "stats", str(folder)])
    assert result.exit_code == 1, result.output  # invalid data
    text = " ".join(result.output.split())
    assert message in text and str(folder / "prompts.jsonl") in text
    assert "Traceback" not in result.output and "a JSON a" not in text


def test_a_self_symlinked_data_file_is_an_os_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "prompts.jsonl").symlink_to("prompts.jsonl")
    for command in (["data", "validate"], ["data", "stats"]):
        result = CliRunner().invoke(app, [*command, str(folder)])
        assert result.exit_code == 3, result.output  # the operating system refused
        assert "Too many levels of symbolic links" in result.output
        assert "Traceback" not in result.output
