"""A study on a cluster: engines chosen in the study file, model groups shared out by
``--cells i/N`` (and a Slurm array over them), ``--report`` from the complete cells, and
``plan --gpus`` sizing each model's GPUs from its memory."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from constant_setup import constant_setup
from psych201.cli import app
from psych201.pipeline import ScoreConfig, ScoringSetup
from psych201.plan_cluster import GPU_KINDS, GpuPool, gpus_for, makespan
from psych201.results import read_responses
from psych201.study import StudyFileError, check_engines_installed, load_study, run_study
from psych201.study.cells import expand, model_groups
from psych201.study.share import Share, balance, share_groups

REPO = Path(__file__).parents[1]
runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _write(tmp_path: Path, spec: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _demo_study(tmp_path: Path, models: list[Any], **extra: Any) -> dict[str, Any]:
    return {"name": "s", "out": str(tmp_path / "runs"), "models": models,
            "conditions": ["raw", "paper"],
            "data": [{"name": "bandit", "path": "demo", "split": "all",
                      "studies": ["simulated_bandit"], "limit": 2},
                     {"name": "risky", "path": "demo", "split": "all",
                      "studies": ["simulated_risky"], "limit": 2}],
            **extra}


# --- engines in study files ---------------------------------------------------------------


def test_study_files_choose_engines_study_wide_and_per_model(tmp_path: Path) -> None:
    spec = _demo_study(tmp_path, [
        "plain-model",
        {"id": "Qwen/Qwen2.5-72B", "engine": "vllm", "args": {"tensor_parallel_size": 4},
         "gpus": 4},
        {"id": "served", "engine": "openai", "args": {"base_url": "http://127.0.0.1:8000/v1",
                                                      "tokenizer": "gpt2"}},
    ], engine={"name": "hf", "args": {"temperatures": "on"}})
    study = load_study(_write(tmp_path, spec))
    assert study.model_ids == ("plain-model", "Qwen/Qwen2.5-72B", "served")
    plain, big, served = (study.engine_for(m) for m in study.model_ids)
    assert (plain.name, dict(plain.args), plain.gpus) == ("hf", {"temperatures": "on"}, None)
    # The study-wide args are the hf engine's: they do not follow a model onto another engine.
    assert (big.name, dict(big.args), big.gpus) == ("vllm", {"tensor_parallel_size": 4}, 4)
    assert served.name == "openai" and "temperatures" not in served.args
    cells = expand(study)
    assert {c.engine.name for c in cells if c.model == "Qwen/Qwen2.5-72B"} == {"vllm"}
    # The older spelling of the study-wide args still reads.
    old = load_study(_write(tmp_path, {**spec, "engine": {"engine_args": {"packing": "on"}}},
                            "old.yaml"))
    assert dict(old.engine_for("plain-model").args) == {"packing": "on"}


@pytest.mark.parametrize(("model", "engine", "message"), [
    ({"id": "m", "engine": "nosuch"}, None, r"models.0 \(m\): unknown engine 'nosuch'"),
    ({"id": "m", "engine": "vllm", "args": {"tensor_parallel": 2}}, None,
     r"models.0 \(m\): args: engine vllm does not take tensor_parallel \(accepted: .*"
     r"tensor_parallel_size"),
    ({"id": "m", "engine": "vllm", "args": {"tensor_parallel_size": "four"}}, None,
     r"engine vllm's tensor_parallel_size is a int, not 'four'"),
    ("m", {"name": "hf", "args": {"packing": "on", "trust_remote_code": True}},
     r"engine hf does not take trust_remote_code"),
    ("m", {"name": "ray"}, r"run the study with `psych201 run STUDY --ray`"),
    ({"id": "m", "gpus": 0}, None, r"models.0.gpus"),
])
def test_wrong_engines_in_a_study_file_are_refused_at_load(
    tmp_path: Path, model: Any, engine: Any, message: str
) -> None:
    spec = _demo_study(tmp_path, [model], **({"engine": engine} if engine else {}))
    with pytest.raises(StudyFileError, match=message):
        load_study(_write(tmp_path, spec))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_an_engine_whose_package_is_missing_is_refused_before_anything_loads(
    tmp_path: Path
) -> None:
    spec = _demo_study(tmp_path, ["m", {"id": "big", "engine": "vllm"}])
    path = _write(tmp_path, spec)
    with pytest.raises(StudyFileError, match=r"engine vllm needs the vllm package.*pip install"):
        check_engines_installed(load_study(path))
    code, output = _cli("run", str(path), "-q")
    assert code == 2 and "needs the vllm package" in output, output
    assert not (tmp_path / "runs").exists()  # not one cell started


def test_a_model_is_loaded_once_for_all_its_cells_and_released(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, _demo_study(tmp_path, ["m-a", "m-b", "m-c"])))
    loads: list[str] = []
    closed: list[str] = []

    def load(config: ScoreConfig) -> ScoringSetup:
        loads.append(config.model)
        setup = constant_setup()
        return ScoringSetup(**{**setup.__dict__,
                               "closers": (lambda: closed.append(config.model),)})

    outcome = run_study(study, load_setup=load, note=lambda _: None)
    assert [o.status for o in outcome.outcomes] == ["scored"] * 12  # 3 models × 2 × 2 data
    assert loads == ["m-a", "m-b", "m-c"] == closed  # once each, freed before the next loads


# --- --cells i/N, --report and the Slurm array ---------------------------------------------


def test_shares_are_balanced_longest_first_and_deterministic() -> None:
    costs = [72.0, 0.5, 7.0, 72.0, 14.0, 1.5, 32.0, 3.0]
    dealt = balance(costs, 3)
    # 72, 72 and 32 open the three bins; everything smaller goes to the 32 one (LPT).
    assert dealt == [[0], [3], [1, 2, 4, 5, 6, 7]]
    assert [sum(costs[i] for i in d) for d in dealt] == [72.0, 72.0, 58.0]
    assert balance(costs, 1) == [list(range(8))]
    assert balance(costs, 10)[8:] == [[], []]  # more tasks than groups: some idle


@pytest.mark.parametrize(("text", "message"), [
    ("3/2", "i must be between 1 and N (2)"), ("0/2", "i must be between 1 and N"),
    ("1/0", "N must be between 1 and"), ("a/b", "expected i/N"), ("1/2/3", "expected i/N"),
])
def test_bad_cells_are_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, _demo_study(tmp_path, ["m"]))
    code, output = _cli("run", str(path), "--cells", text, "-q")
    assert code == 2 and message in output and "Traceback" not in output, output
    assert not (tmp_path / "runs").exists()


def test_limit_zero_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # issue #24 row 9: the error came only after cell 1/1 had started.
    path = _write(tmp_path, _demo_study(tmp_path, ["m"]))
    code, output = _cli("run", str(path), "--limit", "0", "-q")
    assert code == 2 and "--limit 0: must be between 1" in output, output
    assert "[1/" not in output and not (tmp_path / "runs").exists()


def test_the_slurm_array_matches_cells(tmp_path: Path) -> None:
    paper = REPO / "studies" / "paper.yaml"
    groups = model_groups(expand(load_study(paper)))
    for tasks in (None, 5):
        args = ["run", str(paper), "--emit", "slurm", *(["--tasks", str(tasks)] if tasks else [])]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        script = tmp_path / "submit.sh"
        script.write_text(result.stdout)
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        n = tasks or 16
        assert f"#SBATCH --array=1-{n}\n" in result.stdout
        assert f'--cells "${{SLURM_ARRAY_TASK_ID}}/{n}" --no-report' in result.stdout
        assert "--dependency=afterany:" in result.stdout and " --report" in result.stdout
        # 72B models in bf16 need more than one 80 GB H100: each task asks for enough.
        gres = int(re.search(r"--gres=gpu:(\d+)", result.stdout)[1])  # type: ignore[index]
        assert gres >= 2
        listed = re.findall(r"#   task (\d+): (\d+) cells: (.*)", result.stdout)
        assert len(listed) == n
        for index, n_cells, models in listed:
            mine = share_groups(groups, Share(int(index), n))
            assert models == ", ".join(g.model for g in mine)
            assert int(n_cells) == sum(len(g.cells) for g in mine)
        assert sum(int(c) for _, c, _ in listed) == sum(len(g.cells) for g in groups) == 612


@pytest.mark.slow  # ~100 s on the shared 2-core machine: 24 cells of three tiny models, twice
def test_three_shares_then_report_equal_the_sequential_run(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_llama

    root = tmp_path_factory.mktemp("models")
    tok = byte_bpe_tokenizer()
    models = [str(save_tiny(tiny_llama(tok, seed=s), tok, root / f"tiny-{s}")) for s in (0, 1, 2)]
    spec = _demo_study(tmp_path, models, engine={"batch_tokens": 2048})
    sequential = _write(tmp_path, {**spec, "out": str(tmp_path / "seq")}, "seq.yaml")
    shared = _write(tmp_path, {**spec, "out": str(tmp_path / "shared")}, "shared.yaml")
    code, output = _cli("run", str(sequential), "-q")
    assert code == 0, output
    code, output = _cli("run", str(shared), "--report", "-q")  # nothing complete yet
    assert code == 2 and "no complete cell" in output and "12 of 12 cells missing" in output
    ran: list[str] = []
    for i in (1, 2, 3):
        code, output = _cli("run", str(shared), "--cells", f"{i}/3", "-q")
        assert code == 0 and f"task {i}/3" in output, output
        ran += re.findall(r"task \d/3: \d+ models, \d+ cells \((.*?)\)", output)
    assert sorted(m for line in ran for m in line.split(", ")) == sorted(models)
    assert not (tmp_path / "shared" / "report.html").exists()  # the tasks write none
    code, output = _cli("run", str(shared), "--report", "-q")
    assert code == 0 and "missing" not in output, output
    assert (tmp_path / "shared" / "report.html").stat().st_size > 10_000
    for one, other in zip(expand(load_study(sequential)), expand(load_study(shared)),
                          strict=True):
        a, b = read_responses(one.out), read_responses(other.out)
        keys = ["study", "participant", "line", "response_index"]
        assert a[keys].equals(b[keys]), one.label
        assert (a.nll - b.nll).abs().max() <= 1e-5, one.label


# --- plan --gpus and plan's input checks -----------------------------------------------------


def test_gpus_follow_memory_and_the_makespan_packs_them() -> None:
    h100 = GPU_KINDS["h100"]
    assert gpus_for(1e9, h100) == 1
    assert gpus_for(72e9 * 2, h100) >= 2  # a 72B model in bf16 does not fit one H100
    assert gpus_for(72e9 * 2, GPU_KINDS["h200"]) == 2
    assert GpuPool.parse("8xH100").count == 8
    for bad in ("8", "H100", "0xH100", "8xTPU"):
        with pytest.raises(ValueError, match="--gpus"):
            GpuPool.parse(bad)
    assert makespan([(1.0, 1)] * 8, 8) == 1.0
    assert makespan([(1.0, 1)] * 9, 8) == 2.0
    assert makespan([(4.0, 4), (1.0, 1), (1.0, 1), (2.0, 2)], 4) == 6.0  # 4, then 2 ∥ 1+1
    with pytest.raises(ValueError, match="needs 4 GPUs"):
        makespan([(1.0, 4)], 2)


def test_plan_gpus_gives_each_model_its_gpus_and_a_makespan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # hub models are planned from the registry
    spec = _demo_study(tmp_path, ["Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-72B",
                                  {"id": "Qwen/Qwen2.5-7B", "gpus": 2}],
                       engine={"dtype": "bfloat16", "device": "cuda", "batch_tokens": 65536})
    out = tmp_path / "plan.json"
    code, output = _cli("plan", str(_write(tmp_path, spec)), "--gpus", "8xH100", "-o", str(out))
    assert code == 0, output
    assert "makespan on 8xH100" in output
    cluster = json.loads(out.read_text())["cluster"]
    gpus = {g["model"]: (g["gpus"], g["gpus_from"]) for g in cluster["groups"]}
    assert gpus["Qwen/Qwen2.5-0.5B"] == (1, "memory")
    assert gpus["Qwen/Qwen2.5-72B"][0] >= 2 and gpus["Qwen/Qwen2.5-72B"][1] == "memory"
    assert gpus["Qwen/Qwen2.5-7B"] == (2, "study file")
    longest = max(g["hours"] for g in cluster["groups"])
    assert longest <= cluster["makespan_hours"] <= sum(g["hours"] for g in cluster["groups"])


@pytest.mark.parametrize(("args", "message"), [
    # issue #24 row 11: an unknown model was planned with "?" costs, exit 0.
    (["--model", "nope", "--data", "demo"], "unknown model 'nope'"),
    (["--model", "../../../../etc", "--data", "demo"], "not a Hugging Face model folder"),
    (["--model", "Qwen/Qwen2.5-0.5B", "--data", "demo", "--batch-tokens", str(10**26)],
     "--batch-tokens"),
    (["--model", "Qwen/Qwen2.5-0.5B", "--data", "demo", "--limit", "0"], "--limit 0"),
    (["--model", "Qwen/Qwen2.5-0.5B", "--data", "demo", "--gpus", "8xTPU"], "unknown GPU"),
])
def test_plan_refuses_what_score_refuses(args: list[str], message: str) -> None:
    code, output = _cli("plan", *args)
    assert code == 2 and message in output and "Traceback" not in output, output


@pytest.mark.parametrize(("change", "message"), [
    # issue #24 row 12: a study file's bounds and model names, as `score` checks them.
    ({"engine": {"batch_tokens": 10**26}}, "engine.batch_tokens"),
    ({"engine": {"batch_tokens": 1e26}}, "engine.batch_tokens"),
    ({"seed": 10**29}, "seed"),
    ({"models": ["../../../../etc"]}, "not a Hugging Face model folder"),
])
def test_plan_refuses_a_study_file_out_of_bounds(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, {**_demo_study(tmp_path, ["Qwen/Qwen2.5-0.5B"]), **change})
    code, output = _cli("plan", str(path))
    assert code == 2 and message in output and "Traceback" not in output, output


# --- an engine from another package, used from a study file ----------------------------------

_TOY_ENGINE = '''
"""A third-party engine that describes itself: NLL = scale × the response's length."""
from psych201.scoring.engine import EngineInfo
from psych201.scoring.engines import BuiltScorer, EngineCapabilities, EngineEntry
from psych201.scoring.scorer import SpanScore


class LengthScorer:
    def __init__(self, scale):
        self.scale = scale

    def score(self, prompts):
        return [[SpanScore(s.index, 1, self.scale * len(s.text), None, 0.0, 0, False)
                 for s in p.spans] for p in prompts]


def build(spec):
    name = "toy-" + spec.model
    info = EngineInfo("toy", name, "none", "cpu", None)
    return BuiltScorer(LengthScorer(float(spec.options.get("scale", 1.0))), info, None, name,
                       {"id": name, "source": "toy", "file_sha256": None})


ENGINE = EngineEntry("toy", build, options={"scale": (int, float)},
                     capabilities=EngineCapabilities(entropy=False, gpu=False))
'''


def test_an_engine_from_another_package_runs_from_a_study_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "toy_engine-0.dist-info").mkdir(parents=True)
    (site / "toy_engine.py").write_text(textwrap.dedent(_TOY_ENGINE))
    (site / "toy_engine-0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-engine\nVersion: 0\n")
    (site / "toy_engine-0.dist-info" / "entry_points.txt").write_text(
        "[psych201.engines]\ntoy = toy_engine:ENGINE\n")
    spec = _demo_study(tmp_path, ["m", {"id": "n", "args": {"scale": 3}}],
                       engine={"name": "toy", "args": {"scale": 2}}, report=None)
    spec["conditions"] = ["raw"]
    good = _write(tmp_path, spec)
    bad = _write(tmp_path, {**spec, "engine": {"name": "toy", "args": {"scale": "big"}}}, "b.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site),
                                                        os.environ.get("PYTHONPATH", "")])}
    script = ("import sys; from psych201.cli import main; sys.argv = ['psych201', *sys.argv[1:]];"
              " main()")

    def psych201(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script, *args], env=env,
                              capture_output=True, text=True, timeout=300)

    done = psych201("run", str(good), "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    for data in ("bandit", "risky"):
        for model, scale in (("m", 2.0), ("n", 3.0)):
            table = read_responses(tmp_path / "runs" / data / model / "raw")
            assert set(table["model"]) == {f"toy-{model}"} and len(table) > 0
            assert list(table["nll"]) == [scale * len(t) for t in table["response_text"]]
    refused = psych201("run", str(bad), "-q")
    assert refused.returncode == 2
    assert "engine toy's scale is a int or float, not 'big'" in " ".join(refused.stderr.split())


# --- shared caches --------------------------------------------------------------------------


def test_two_workers_never_convert_the_same_model_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from psych201.scoring import gguf_conversion
    from psych201.scoring.catalogue import GGUFSource

    conversions: list[Path] = []

    def slow_convert(gguf_path: Path, out: Path) -> None:
        conversions.append(gguf_path)
        time.sleep(0.5)  # long enough for the other worker to arrive meanwhile
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_conversion, "_convert_gguf", slow_convert)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    source = GGUFSource(name="m", sha256=lambda: "ab" * 32,
                                locate=lambda _scratch: gguf, source=str(gguf))
    folders: list[Path] = []
    workers = [threading.Thread(target=lambda: folders.append(
        gguf_conversion.converted_folder(source, tmp_path / "cache"))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(conversions) == 1 and len(set(folders)) == 1 and len(folders) == 2
    assert (folders[0] / "config.json").is_file()


def test_a_cell_scored_by_another_engine_is_not_complete(tmp_path: Path) -> None:
    from psych201.study import is_complete, score_config

    spec = _demo_study(tmp_path, ["m"], engine={"name": "oracle"})
    spec["data"] = spec["data"][:1]
    spec["conditions"] = ["raw"]
    study = load_study(_write(tmp_path, spec))
    code, output = _cli("run", str(tmp_path / "study.yaml"), "-q", "--no-report")
    assert code == 0, output
    (cell,) = expand(study)
    assert is_complete(cell, score_config(cell, study))
    # The study file now names another engine for the model: its cell is scored again.
    moved = load_study(_write(tmp_path, {**spec, "engine": {"name": "hf"}}, "moved.yaml"))
    (again,) = expand(moved)
    assert again.out == cell.out and not is_complete(again, score_config(again, moved))


def test_the_ray_driver_reports_every_cell_study_wide_with_an_eta(tmp_path: Path) -> None:
    """The driver of ``--ray`` learns of each finished cell from its folder on the shared file
    system, whichever worker scored it: ``[k/N cells]`` over the whole study, with an ETA from
    the planned cost refreshed by the measured rate; cells complete before the run count as done
    and are not timed."""
    from psych201.study.ray_run import CellWatch
    from psych201.study.share import group_costs

    study = load_study(_write(tmp_path, _demo_study(tmp_path, ["m-a", "m-b"],
                                                    engine={"name": "oracle"})))
    groups = model_groups(expand(study))
    first, *_ = groups[0].cells
    run_study(study, note=lambda _: None, only=[first])
    watch = CellWatch(study, groups, group_costs(groups), started=0.0)
    assert len(watch.cells) == 8 and watch.before == {first.out}
    assert watch.poll() == [] and watch.eta() == "–"  # nothing timed yet
    run_study(study, note=lambda _: None,
              only=list(groups[0].cells[1:3]))
    lines = watch.poll()
    assert [line.split(" · ")[0] for line in lines] == [
        f"[2/8 cells] {groups[0].cells[1].label}", f"[3/8 cells] {groups[0].cells[2].label}"]
    assert re.search(r"ETA \d+h\d\dm|ETA \d+m\d\ds", lines[-1]), lines[-1]
    assert watch.poll() == []  # each cell is reported once
    run_study(study, note=lambda _: None)
    assert watch.poll()[-1].startswith("[8/8 cells]") and watch.eta() == "0m00s"


def test_two_workers_never_download_the_same_model_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub download runs under a per-model file lock in the HF cache: two workers asking
    for one model at once fetch it one after the other (the second finds it complete); offline,
    no lock is taken, so a read-only shared cache still serves."""
    import threading
    import time

    import huggingface_hub

    from psych201.scoring.models import hub_snapshot

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    inside: list[int] = []
    overlaps: list[int] = []

    def fake_download(repo: str, **kwargs: Any) -> str:
        inside.append(1)
        if len(inside) > 1:
            overlaps.append(len(inside))
        time.sleep(0.3)
        inside.pop()
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    workers = [threading.Thread(target=hub_snapshot, args=("org/model",)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert overlaps == []
    assert (tmp_path / "hub" / ".psych201-download-org--model.lock").exists()
    # Offline: no lock file is made (the cache may be read-only).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "read-only"))
    hub_snapshot("org/other")
    assert not (tmp_path / "read-only").exists()
