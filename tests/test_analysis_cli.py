"""`psych201 models` and `psych201 compare` on Parquet score tables (synthetic, known structure)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import cli_output as _invoke
from psych201.analysis import paper
from psych201.analysis.registry import load_registry
from psych201.analysis.synthetic import STUDIES, SyntheticDesign, synthetic_responses

REGISTRY = load_registry()
MODELS = ("gemma-3-270m", "smollm2-135m-instruct", "Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-0.6B")
DESIGN = SyntheticDesign(studies={s: STUDIES[s] for s in list(STUDIES)[:6]}, n_participants=4,
                         n_responses=8, seed=5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tables")
    paths = {}
    for name in MODELS:
        frame = synthetic_responses([REGISTRY[name]], design=DESIGN, conditions=("raw",))
        paths[name] = folder / f"{name.replace('/', '_')}.parquet"
        frame.to_parquet(paths[name])
    return paths


def test_models_lists_the_registry() -> None:
    code, out = _invoke("models", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == len(REGISTRY)
    assert {"id", "family", "params_b", "post_training", "base", "paper", "local"} <= set(rows[0])
    code, out = _invoke("models", "--local", "--format", "csv")
    assert code == 0 and out.count("\n") == 3  # header + the two built-in models
    code, out = _invoke("models", "--type", "vision", "--format", "json")
    assert len(json.loads(out)) == 14
    code, out = _invoke("models", "--family", "OLMo 3")
    assert code == 0 and "allenai/Olmo-3-7B-Think" in out


def test_compare_leaderboard_matches_direct_computation(runs: dict[str, Path]) -> None:
    code, out = _invoke("compare", *map(str, runs.values()), "--format", "json", "--n-boot", "200")
    assert code == 0, out
    result = json.loads(out)
    board = pd.DataFrame(result["leaderboard"]).set_index("model")
    assert list(board["rank"]) == [1, 2, 3, 4]
    assert board["score"].is_monotonic_increasing
    for name, path in runs.items():
        frame = pd.read_parquet(path)
        direct = frame.groupby("study")["nll"].mean().mean()  # studies weighted equally
        assert board.loc[name, "score"] == pytest.approx(direct, rel=1e-12)
        assert board.loc[name, "ci_low"] < board.loc[name, "score"] < board.loc[name, "ci_high"]
        assert board.loc[name, "n_studies"] == 6
    # the registry pair among the inputs is analysed automatically
    post_training = result["sections"]["post-training"]["tables"]
    pairs = pd.DataFrame(post_training["pairs"])
    assert list(pairs["post"]) == ["Qwen/Qwen3-0.6B"]
    frame = pd.concat([pd.read_parquet(p) for p in runs.values()])
    expected = paper.pair_d(frame, "Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B-Base",
                            condition="raw").d
    assert pairs.loc[0, "d"] == pytest.approx(expected, rel=1e-12)
    (reasoning,) = post_training["type_d"]
    assert reasoning["ci_low"] < reasoning["d"] < reasoning["ci_high"]
    assert reasoning["n_pairs"] == 1 and reasoning["n_studies"] == 6
    assert result["sections"]["generations"]["tables"]["generations"][0]["family"] == "Qwen3"


def test_compare_a_named_pair_reports_all_effect_sizes(runs: dict[str, Path]) -> None:
    code, out = _invoke("compare", *map(str, runs.values()), "--pair",
                        "smollm2-135m-instruct=gemma-3-270m", "--format", "json",
                        "--n-boot", "200")
    assert code == 0, out
    (result,) = json.loads(out)
    effects = {e["name"]: e for e in result["effects"]}
    assert set(effects) == {"paper d (sample SD)", "paper d (population SD)",
                            "mean NLL difference", "mixed model: mean difference",
                            "sign test across studies"}
    for e in effects.values():
        assert e["ci_low"] <= e["estimate"] <= e["ci_high"] and e["n_studies"] == 6
    assert len(result["per_study"]) == 6
    code, out = _invoke("compare", *map(str, runs.values()), "--pair",
                        "smollm2-135m-instruct=gemma-3-270m", "--n-boot", "200")
    assert code == 0 and "paper d (sample SD)" in out and "Per study" in out


def test_different_study_sets_are_refused_unless_allowed(runs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    frame = pd.read_parquet(runs["gemma-3-270m"])
    missing = list(STUDIES)[2]
    partial = tmp_path / "gemma-partial.parquet"
    frame[frame["study"] != missing].to_parquet(partial)
    args = ["compare", str(partial), str(runs["Qwen/Qwen3-0.6B"]), "--n-boot", "200"]
    code, out = _invoke(*args)
    assert code == 2
    assert "gemma-3-270m lacks" in out and missing in out and "--allow-missing" in out
    code, out = _invoke(*args, "--allow-missing", "--format", "json")
    assert code == 0
    assert all(r["n_studies"] == 5 for r in json.loads(out)["leaderboard"])


@pytest.mark.parametrize("case", ["no-file", "not-a-table", "twice", "two-mains", "bad-pair"])
def test_bad_input_is_reported_with_exit_code_2(case: str, runs: dict[str, Path],
                                                tmp_path: Path) -> None:
    one = str(runs["gemma-3-270m"])
    if case == "no-file":
        args, expected = ["compare", str(tmp_path / "nope.parquet")], "no such run directory"
    elif case == "not-a-table":
        bad = tmp_path / "bad.parquet"
        pd.DataFrame({"x": [1]}).to_parquet(bad)
        args, expected = ["compare", str(bad)], "missing"
    elif case == "twice":
        args, expected = ["compare", one, one], "response scored twice"
    elif case == "two-mains":
        other = tmp_path / "paper.parquet"
        pd.read_parquet(one).assign(condition="other").to_parquet(other)
        other2 = tmp_path / "plain.parquet"
        pd.read_parquet(one).assign(condition="plain").to_parquet(other2)
        args, expected = ["compare", str(other), str(other2)], "several main conditions"
    else:
        args, expected = ["compare", one, "--pair", "gemma-3-270m"], "expected POST=BASE"
    code, out = _invoke(*args)
    assert code == 2
    assert expected in out.replace("\n", " ")


def test_figures_from_results(runs: dict[str, Path], tmp_path: Path) -> None:
    code, out = _invoke("figures", *map(str, runs.values()), "-o", str(tmp_path / "figs"),
                        "--formats", "png", "--n-boot", "200")
    assert code == 0, out
    names = sorted(p.stem for p in (tmp_path / "figs").glob("*.png"))
    # no discrete/persona/chat-template runs: accuracy falls back to the single-token responses
    assert names == ["fig2_size", "fig3a_generations", "fig4_domains", "fig_accuracy",
                     "fig_nll_entropy_1", "fig_participant_diffs_1",  # the diagnostics
                     "forest_1", "leaderboard"]


def test_compare_pair_writes_its_json_file_and_refuses_data_in_one_line(
        runs: dict[str, Path], tmp_path: Path) -> None:
    """Row 10: --json and --data were ignored silently with --pair (no file written)."""
    out = tmp_path / "pair.json"
    args = ["compare", *map(str, runs.values()), "--pair", "smollm2-135m-instruct=gemma-3-270m",
            "--n-boot", "200"]
    code, output = _invoke(*args, "--json", str(out))
    assert code == 0, output
    (result,) = json.loads(out.read_text())
    assert result["post"] == "smollm2-135m-instruct" and len(result["per_study"]) == 6
    assert "paper d (sample SD)" in {e["name"] for e in result["effects"]}
    code, output = _invoke(*args, "--data", "demo")
    assert code == 2
    assert output.strip().startswith("error: --data has no effect with --pair")
    assert output.strip().count("\n") == 0 and "Traceback" not in output


def test_a_pair_on_one_study_leads_with_the_paired_participant_difference(
        tmp_path: Path) -> None:
    """Row 11: one study gave a pair d of [–, –] and a sign test over one study."""
    one = SyntheticDesign(studies={"dezfouli2019": 2}, n_participants=20, n_responses=10, seed=2)
    paths = []
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        paths.append(tmp_path / f"{name}.parquet")
        synthetic_responses([REGISTRY[name]], design=one, conditions=("raw",)).to_parquet(
            paths[-1])
    code, output = _invoke("compare", *map(str, paths), "--pair",
                           "smollm2-135m-instruct=gemma-3-270m", "--n-boot", "500", "--format",
                           "json")
    assert code == 0, output
    (result,) = json.loads(output)
    names = [e["name"] for e in result["effects"]]
    assert names[:2] == ["paired difference per participant",
                         "paired d (per-participant differences)"]
    assert "sign test across studies" not in names and "mixed model: mean difference" not in names
    for e in result["effects"]:
        assert e["ci_low"] <= e["estimate"] <= e["ci_high"], e
        assert (e["p_value"] < 0.05) == (e["ci_low"] > 0 or e["ci_high"] < 0), e
    assert any("one shared study" in note for note in result["notes"])
