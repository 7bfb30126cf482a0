"""Run directories that cannot be corrupted (issue 14, rows 1–4), on real data with a tiny model.

One process owns a run directory (an OS lock naming its PID; a SIGKILLed holder never blocks a
rerun); a complete run proves itself (row count and SHA-256 in the manifest; a missing, truncated
or changed table is rebuilt from the parts); a lost manifest does not block the rerun; ``runs
verify`` names each problem and ``--repair`` rebuilds what can be rebuilt; ``merge`` never writes
into a source and replaces an existing output only with ``--force``; and SIGKILLs of ``score`` and
``merge`` at random moments, followed by reruns, leave bit-identical tables that ``runs verify``
accepts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cli_helpers import invoke as _cli
from paths import DATA, needs_data
from psych201.results import read_manifest, read_responses
from psych201.results.lock import LOCK_FILE, RunDirLockedError, holder_of, lock_run_dir
from psych201.results.verify import verify_run
from psych201.results.writer import part_paths

STUDY = DATA / "guenther2022relational"  # short sessions (about 5,000 characters each)
LIMIT = 3
KEY = ["model", "condition", "study", "experiment", "participant", "line", "response_index"]
#: Random SIGKILLs per command in the kill test (the issue asks for 20).
KILLS = int(os.environ.get("PSYCH201_KILLS", "20"))

pytestmark = needs_data(STUDY)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def _args(tiny_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "score",
        "--model", str(tiny_dir),
        "--data", str(STUDY),
        "--split", "all",
        "--limit", str(LIMIT),
        "--part-size", "1",
        "--quiet",
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def complete_run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("runs") / "complete"
    result = _cli(_args(tiny_dir, out))
    assert result.exit_code == 0, result.output
    return out


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


def _no_duplicate_keys(run: Path) -> int:
    table = read_responses(run)
    assert not table.duplicated(KEY).any()
    return len(table)


# ---------------------------------------------------------------------------------------------
# A process launcher with psych201, torch and transformers already imported: each command is a
# real process (forked, so it owns its file descriptors and locks, and SIGKILL kills it) that
# starts in milliseconds instead of seconds. The kill test needs 40+ processes; cold interpreters
# would spend most of the test importing torch.

_LAUNCHER = r"""
import json, os, sys
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
import transformers.models.llama.modeling_llama
import psych201.pipeline, psych201.scoring.hf, psych201.scoring.models, psych201.scoring.scorer
import psych201.results.merge, psych201.results.verify
from psych201.cli import main

# Warm what every command builds on first use (typer's parameter types, lazy imports).
sys.argv = ["psych201", "score", "--help"]
saved = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
os.dup2(saved, 1)
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        sink = os.open(job.get("stderr") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(sink, 2)
        sys.argv = ["psych201", *job["argv"]]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            code = 70
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    _, status, usage = os.wait4(pid, 0)
    print(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, flush=True)
"""


class Launcher:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the launcher died"
        return line.strip()

    def start(self, argv: list[str], stderr: Path | None = None) -> int:
        assert self.proc.stdin is not None
        job = {"argv": argv, "stderr": str(stderr) if stderr else None}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return int(self._read())

    def wait(self) -> int:
        """Exit code of the last started process (negative: killed by that signal)."""
        code, cpu_s = self._read().split()
        self.cpu_s = float(cpu_s)
        return int(code)

    def kill_after(self, argv: list[str], delay_s: float) -> int:
        """Start a command, SIGKILL it after ``delay_s`` unless it has exited; its exit code."""
        pid = self.start(argv)
        time.sleep(delay_s)
        with contextlib.suppress(ProcessLookupError):  # it finished first
            os.kill(pid, signal.SIGKILL)
        return self.wait()

    def run(self, argv: list[str], stderr: Path | None = None) -> int:
        self.start(argv, stderr)
        return self.wait()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def launcher() -> Any:
    launch = Launcher()
    yield launch
    launch.close()


# ---------------------------------------------------------------------------------------------
# Row 1: one process owns a run directory


def test_the_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with lock_run_dir(run):
        assert holder_of(run) == f"PID {os.getpid()}"
        with pytest.raises(RunDirLockedError, match=f"in use by .*PID {os.getpid()}") as info:
            lock_run_dir(run)
        assert info.value.exit_code == 2
        (run / "manifest.json").write_text("{}")
    assert holder_of(run) is None
    lock_run_dir(run).release()  # free again once released
    # A command that wrote nothing leaves no directory behind.
    with lock_run_dir(tmp_path / "unused"):
        pass
    assert not (tmp_path / "unused").exists()


def test_a_sigkilled_holder_never_blocks_a_rerun(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from psych201.results.lock import lock_run_dir; "
            "lock = lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(600)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert holder_of(run) == f"PID {holder.pid}"
        with pytest.raises(RunDirLockedError, match=f"PID {holder.pid}"):
            lock_run_dir(run)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()
    # The lock file outlives its holder, with the dead PID in it; the kernel released the lock.
    assert (run / LOCK_FILE).read_text().split()[0] == str(holder.pid)
    assert holder_of(run) is None
    with lock_run_dir(run):
        assert (run / LOCK_FILE).read_text().split()[0] == str(os.getpid())


@pytest.mark.slow  # over 40 s on the shared 2-core machine
def test_two_score_processes_on_one_directory_one_wins_the_other_exits_2_at_once(
    tiny_dir: Path, complete_run: Path, launcher: Launcher, tmp_path: Path
) -> None:
    out = tmp_path / "R"
    cold = [sys.executable, "-c", "from psych201.cli import main; main()"]
    winner = subprocess.Popen(
        [*cold, *_args(tiny_dir, out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while holder_of(out) is None:
            assert winner.poll() is None, winner.stderr.read() if winner.stderr else ""
            assert time.monotonic() < deadline, "the first process never took the lock"
            time.sleep(0.005)
        # A second command (another part size, as in the issue) while the first one runs, from
        # a process with the imports done: the refusal itself takes well under a second.
        stderr = tmp_path / "loser.err"
        started = time.monotonic()
        code = launcher.run(_args(tiny_dir, out, "--part-size", "3"), stderr)
        warm_s = time.monotonic() - started
        # The same from a fresh interpreter (imports included).
        started = time.monotonic()
        loser = subprocess.run(
            [*cold, *_args(tiny_dir, out, "--part-size", "3")],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        cold_s = time.monotonic() - started
        assert winner.poll() is None, "the first process finished too early for this test"
        assert winner.wait(timeout=300) == 0, winner.stderr.read() if winner.stderr else ""
    finally:
        winner.kill()
        winner.wait()
        if winner.stderr:
            winner.stderr.close()
    cpu_s = launcher.cpu_s
    print(
        f"loser exits after {warm_s:.3f} s ({cpu_s:.3f} s CPU) forked, {cold_s:.2f} s from a "
        f"fresh interpreter; load average {os.getloadavg()[0]:.1f}"
    )
    for rc, message in ((code, stderr.read_text()), (loser.returncode, loser.stderr)):
        assert rc == 2, message
        assert f"PID {winner.pid}" in message and "in use" in message
        assert len(message.strip().splitlines()) == 1, message
    # Under a second: CPU time always; wall time where other processes leave it a core.
    assert cpu_s < 1.0
    if os.getloadavg()[0] < (os.cpu_count() or 1):
        assert warm_s < 1.0
    assert _no_duplicate_keys(out) == _no_duplicate_keys(complete_run)
    assert _sha(out / "responses.parquet") == _sha(complete_run / "responses.parquet")
    assert len(read_manifest(out)["invocations"]) == 1  # the loser wrote nothing
    assert verify_run(out).ok


# ---------------------------------------------------------------------------------------------
# Row 3: a complete run proves itself


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _replace_with_one_part(path: Path) -> None:
    # A valid Parquet file with the right schema but other rows: only the hash can tell.
    first = part_paths(path.parent)[0]
    pq.write_table(pq.read_table(first), path)


@pytest.mark.parametrize(
    "damage",
    [Path.unlink, _truncate, _replace_with_one_part],
    ids=["missing", "truncated", "other"],
)
def test_a_complete_run_rebuilds_a_missing_or_damaged_table(
    tiny_dir: Path, complete_run: Path, tmp_path: Path, damage: Any
) -> None:
    run = _copy(complete_run, tmp_path)
    table = run / "responses.parquet"
    manifest = read_manifest(run)
    assert manifest["table"] == {
        "file": "responses.parquet",
        "rows": manifest["counts"]["responses"],
        "sha256": _sha(table),
    }
    damage(table)
    assert not verify_run(run).ok
    result = _cli(_args(tiny_dir, run, "--part-size", "2"))
    assert result.exit_code == 0, result.output
    assert _sha(table) == _sha(complete_run / "responses.parquet")
    assert read_manifest(run)["counts"]["responses"] == manifest["counts"]["responses"]
    assert verify_run(run).ok


# ---------------------------------------------------------------------------------------------
# Row 4: a lost manifest


def test_a_lost_manifest_with_intact_parts_does_not_block_the_rerun(
    tiny_dir: Path, complete_run: Path, tmp_path: Path
) -> None:
    run = _copy(complete_run, tmp_path)
    (run / "manifest.json").unlink()
    (run / "responses.parquet").unlink()
    (run / "parts" / part_paths(run)[-1].name).unlink()  # and the run was not finished
    result = _cli(_args(tiny_dir, run))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(run)
    assert manifest["status"] == "complete"
    assert manifest["invocations"][-1]["recovered_parts"] == LIMIT - 1
    assert manifest["invocations"][-1]["scored_sessions"] == 1
    assert _sha(run / "responses.parquet") == _sha(complete_run / "responses.parquet")
    assert verify_run(run).ok


def test_a_lost_manifest_and_parts_of_another_configuration_are_refused(
    tiny_dir: Path, complete_run: Path, tmp_path: Path
) -> None:
    run = _copy(complete_run, tmp_path)
    (run / "manifest.json").unlink()
    result = _cli(_args(tiny_dir, run, "--seed", "1"))
    assert result.exit_code == 2
    assert "was written by run" in result.output and "not by this configuration" in result.output


def test_runs_verify_repair_rebuilds_a_lost_manifest_then_score_finishes(
    tiny_dir: Path, complete_run: Path, tmp_path: Path
) -> None:
    run = _copy(complete_run, tmp_path)
    (run / "manifest.json").unlink()
    result = _cli(["runs", "verify", str(run)])
    assert result.exit_code == 1
    assert f"damaged: {run / 'manifest.json'}: missing ({LIMIT} intact parts" in result.output
    result = _cli(["runs", "verify", "--repair", str(run)])
    assert result.exit_code == 0, result.output
    assert "repaired:" in result.output and "rebuilt from 3 parts" in result.output
    assert "in use by" not in result.output  # the repair's own lock is not another user
    assert read_manifest(run)["status"] == "recovered"
    result = _cli(_args(tiny_dir, run))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(run)
    assert manifest["status"] == "complete" and manifest["spec"] is not None
    assert "recovered" not in manifest
    assert _sha(run / "responses.parquet") == _sha(complete_run / "responses.parquet")
    assert _cli(["runs", "verify", str(run)]).exit_code == 0


# ---------------------------------------------------------------------------------------------
# runs verify: one line per problem, exit 1; --repair rebuilds or says why not


def test_rerun_of_a_complete_run_loads_no_model(
    tiny_dir: Path, complete_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psych201.pipeline

    loads: list[str] = []

    def load(config: Any) -> Any:
        loads.append(str(config.model))
        raise RuntimeError("the model was loaded")

    monkeypatch.setattr(psych201.pipeline, "load_hf_setup", load)
    run = _copy(complete_run, tmp_path)
    result = _cli(_args(tiny_dir, run))
    assert result.exit_code == 0, result.output
    assert loads == [] and read_manifest(run)["invocations"][-1]["model_loaded"] is False
    (run / "responses.parquet").unlink()  # still proven from the parts, still no model
    assert _cli(_args(tiny_dir, run)).exit_code == 0 and loads == []
    assert _sha(run / "responses.parquet") == _sha(complete_run / "responses.parquet")
    # Another window is another configuration: the model loads for the full check.
    assert _cli(_args(tiny_dir, run, "--max-tokens", "256")).exit_code != 0
    assert loads == [str(tiny_dir)]


def test_repair_of_a_folder_that_is_no_run_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    result = _cli(["runs", "verify", "--repair", str(folder)])
    assert result.exit_code == 1
    assert "not a run directory" in result.output and "in use by" not in result.output
    assert list(folder.iterdir()) == []  # no lock file left behind


def test_runs_verify_clean_and_damaged_runs(complete_run: Path, tmp_path: Path) -> None:
    result = _cli(["runs", "verify", str(complete_run)])
    assert result.exit_code == 0, result.output
    assert f"{complete_run}: ok (status complete, {LIMIT} parts" in result.output

    table_gone = _copy(complete_run, tmp_path, "table-gone")
    (table_gone / "responses.parquet").unlink()
    part_broken = _copy(complete_run, tmp_path, "part-broken")
    broken = part_paths(part_broken)[1]
    _truncate(broken)
    doubled = _copy(complete_run, tmp_path, "doubled")
    shutil.copy(part_paths(doubled)[0], doubled / "parts" / "part-00000009-00000009.parquet")

    result = _cli(["runs", "verify", str(complete_run), str(table_gone), str(part_broken)])
    assert result.exit_code == 1
    damaged = [line for line in result.output.splitlines() if line.startswith("damaged:")]
    assert damaged[0] == f"damaged: {table_gone / 'responses.parquet'}: missing"
    assert damaged[1].startswith(f"damaged: {broken}: unreadable")
    result = _cli(["runs", "verify", str(doubled)])
    assert result.exit_code == 1 and "is also in part-00000000-00000000.parquet" in result.output
    assert "responses appear more than once" in result.output

    result = _cli(["runs", "verify", "--repair", str(table_gone)])
    assert result.exit_code == 0, result.output
    assert "bit-identical to the recorded table" in result.output
    assert _sha(table_gone / "responses.parquet") == _sha(complete_run / "responses.parquet")

    result = _cli(["runs", "verify", "--repair", str(part_broken)])
    assert result.exit_code == 1
    assert f"not repaired: {broken}: unreadable" in result.output
    assert "delete it and rerun the run's score command" in result.output

    with lock_run_dir(table_gone):
        result = _cli(["runs", "verify", "--repair", str(table_gone)])
    assert result.exit_code == 2 and f"PID {os.getpid()}" in result.output


# ---------------------------------------------------------------------------------------------
# Row 2: merge never writes into a source


def test_merge_never_writes_into_a_source_and_replaces_only_with_force(
    complete_run: Path, tmp_path: Path
) -> None:
    r0 = _copy(complete_run, tmp_path, "R0")
    before = {p: _sha(p) for p in [r0 / "responses.parquet", r0 / "manifest.json"]}
    for out in (r0 / "responses.parquet", r0, r0 / "parts" / "new", tmp_path):
        result = _cli(["merge", str(r0), "--out", str(out), "--force"])
        assert result.exit_code == 2 and "cannot be, or be inside, a source" in result.output
    assert {p: _sha(p) for p in before} == before

    merged = tmp_path / "M"
    assert _cli(["merge", str(r0), "--out", str(merged)]).exit_code == 0
    assert _sha(merged / "responses.parquet") == _sha(r0 / "responses.parquet")
    assert verify_run(merged).ok
    # The same merge again is redone; another merge into it needs --force.
    assert _cli(["merge", str(r0), "--out", str(merged)]).exit_code == 0
    other = _copy(complete_run, tmp_path, "R1")
    result = _cli(["merge", str(other), "--out", str(merged)])
    assert result.exit_code == 2 and "pass --force to replace it" in result.output
    assert _cli(["merge", str(other), "--out", str(merged), "--force"]).exit_code == 0
    # --force never replaces a scoring run.
    scoring = _copy(complete_run, tmp_path, "scoring")
    result = _cli(["merge", str(other), "--out", str(scoring), "--force"])
    assert result.exit_code == 2 and "replaces only a previous merge output" in result.output

    single = tmp_path / "m.parquet"
    assert _cli(["merge", str(r0), "--out", str(single)]).exit_code == 0
    result = _cli(["merge", str(r0), "--out", str(single)])
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert _cli(["merge", str(r0), "--out", str(single), "--force"]).exit_code == 0


# ---------------------------------------------------------------------------------------------
# Random SIGKILLs of score and merge, then reruns


def _verify_if_started(run: Path) -> None:
    """`runs verify` accepts whatever a kill left, once the run has written anything."""
    if (run / "manifest.json").exists() or part_paths(run):
        report = verify_run(run)
        assert report.ok, [str(p) for p in report.problems]


@pytest.mark.slow  # over 40 s on the shared 2-core machine
def test_random_sigkills_of_score_and_merge_then_reruns_leave_bit_identical_tables(
    tiny_dir: Path, complete_run: Path, launcher: Launcher, tmp_path: Path
) -> None:
    rng = random.Random(14)
    reference = _sha(complete_run / "responses.parquet")
    started = time.monotonic()
    assert launcher.run(_args(tiny_dir, tmp_path / "timing")) == 0
    full_s = time.monotonic() - started
    assert _sha(tmp_path / "timing" / "responses.parquet") == reference

    # score: each command is killed at a random moment; the next one resumes the same
    # directory (and is killed in turn); a directory that completes is compared and replaced.
    serial = 0
    out = tmp_path / f"score-{serial}"
    killed = finished = 0
    while killed < KILLS:
        code = launcher.kill_after(_args(tiny_dir, out), rng.uniform(0.0, full_s))
        _verify_if_started(out)
        if code == -signal.SIGKILL:
            killed += 1
            continue
        assert code == 0
        assert _sha(out / "responses.parquet") == reference
        finished += 1
        serial += 1
        out = tmp_path / f"score-{serial}"
    assert launcher.run(_args(tiny_dir, out)) == 0
    assert _sha(out / "responses.parquet") == reference
    assert verify_run(out).ok
    score_s = time.monotonic() - started

    # merge: killed at a random moment, then rerun to completion.
    merged_ref = tmp_path / "merged-ref"
    started = time.monotonic()
    assert launcher.run(["merge", str(complete_run), "--out", str(merged_ref)]) == 0
    merge_s = time.monotonic() - started
    merge_reference = _sha(merged_ref / "responses.parquet")
    merge_killed = merge_finished = 0
    while merge_killed < KILLS:
        out = tmp_path / f"merge-{merge_killed + merge_finished}"
        argv = ["merge", str(complete_run), "--out", str(out)]
        code = launcher.kill_after(argv, rng.uniform(0.0, merge_s))
        _verify_if_started(out)
        if code == -signal.SIGKILL:
            merge_killed += 1
            assert launcher.run(argv) == 0  # the same command again
        else:
            assert code == 0
            merge_finished += 1
        assert _sha(out / "responses.parquet") == merge_reference
        assert verify_run(out).ok
    print(
        f"score: {killed} kills, {finished} runs finished first, {score_s:.1f} s "
        f"(one run {full_s:.2f} s); merge: {merge_killed} kills, {merge_finished} merges "
        f"finished first (one merge {merge_s:.2f} s)"
    )
