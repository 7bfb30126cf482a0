"""`psych201 play`: models take part in tasks in closed loop (transcripts, choice table, resume).

The cognitive-model player is the ground truth (its transcripts are ``simulate``'s); a tiny
random language model checks the engine path offline: option probabilities, batching across
participants, refusal of engines without option log-probs before anything loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import cli_output
from psych201.data.readers import discover_studies, iter_sessions
from psych201.pipeline.play import PlaySpec, run_play
from psych201.pipeline.play_models import language_model_players
from psych201.scoring.hf_generate import parse_answer
from psych201.simulate import simulate_study, to_jsonl
from psych201.simulate.play import ChoicePoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("task", ["bandit", "twostep"])
def test_the_cognitive_player_writes_simulates_transcripts(task: str, tmp_path: Path) -> None:
    code, output = cli_output("play", "--task", task, "--model", "cognitive", "-n", "7",
                              "--trials", "9", "--seed", "3", "--chunk", "3",
                              "--out", str(tmp_path / "run"))
    assert code == 0, output
    written = (tmp_path / "run" / "transcripts" / f"play_{task}_cognitive.jsonl").read_bytes()
    assert written == to_jsonl(simulate_study(task, n_participants=7, n_trials=9, seed=3))
    choices = pd.read_parquet(tmp_path / "run" / "choices.parquet")
    per_trial = 2 if task == "twostep" else 1
    assert len(choices) == 7 * 9 * per_trial
    probs = np.array([np.exp(v).sum() for v in choices["option_logprobs"]])
    np.testing.assert_allclose(probs, 1.0, atol=1e-12)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["spec"]["seed"] == 3


def test_an_engine_whose_package_is_missing_is_named_before_anything_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psych201.scoring.engines import EnginePackage

    # as where llama-cpp-python is not installed (it was exit 70 from inside the engine)
    monkeypatch.setattr(EnginePackage, "installed", lambda self: self.module != "llama_cpp")
    code, output = cli_output("play", "--task", "bandit", "--model", str(tmp_path / "m.gguf"),
                              "--engine", "llamacpp", "--mode", "batch", "-n", "2",
                              "--out", str(tmp_path / "run"))
    assert code == 2, output
    assert "llamacpp needs the llama_cpp package, which is not installed" in " ".join(
        output.split())
    code, output = cli_output("play", "--task", "bandit", "--model", str(tmp_path / "m.gguf"),
                              "--engine", "llamacpp", "-n", "2", "--out", str(tmp_path / "run"))
    assert code == 2 and "use --mode batch with --engine llamacpp" in " ".join(output.split())


def test_a_play_run_folder_reads_as_its_transcripts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_play(PlaySpec(task="bandit", model="cognitive", n_participants=3, n_trials=4), out)
    # not its choice table: read as a study, every one of its rows failed
    assert [(s.name, s.path) for s in discover_studies(out)] == [
        ("play_bandit_cognitive", out / "transcripts" / "play_bandit_cognitive.jsonl")]
    code, output = cli_output("data", "validate", str(out))
    assert code == 0 and "3 sessions, 12 responses, 0 error(s)" in output, output


def test_a_rerun_resumes_and_gives_the_same_run(tmp_path: Path) -> None:
    spec = PlaySpec(task="reversal", model="cognitive", n_participants=8, n_trials=10, chunk=3)
    out = tmp_path / "run"
    first = run_play(spec, out)
    before = first.transcripts.read_bytes(), first.choices.read_bytes()
    # a crash after two chunks: the third's files are gone
    for f in (out / "parts").glob("participants-000007-*"):
        f.unlink()
    again = run_play(spec, out)
    assert again.resumed_chunks == 2
    assert (again.transcripts.read_bytes(), again.choices.read_bytes()) == before
    # more participants resume the run; fewer would drop some from its transcripts
    grown = run_play(PlaySpec(task="reversal", model="cognitive", n_participants=9, n_trials=10,
                              chunk=3), out)
    assert grown.resumed_chunks == 2 and grown.n_participants == 9  # 7-8 became 7-9
    with pytest.raises(ValueError, match=r"of 9 participants; -n 8 would drop 1 of them"):
        run_play(spec, out)
    assert len(grown.transcripts.read_text().splitlines()) == 9
    with pytest.raises(ValueError, match=r"other settings.*seed"):
        run_play(PlaySpec(task="reversal", model="cognitive", n_participants=8, n_trials=10,
                          chunk=3, seed=1), out)


def test_a_second_process_is_refused_before_its_model_loads(tmp_path: Path) -> None:
    from psych201.results.lock import lock_run_dir

    out = tmp_path / "run"
    # the model does not exist: a refusal that got as far as loading would say so instead
    with lock_run_dir(out):  # another process playing into the same folder
        code, output = cli_output("play", "--task", "bandit", "--model", str(tmp_path / "none"),
                                  "-n", "2", "--out", str(out))
        assert code == 2, output
        assert "is in use by another psych201 process" in " ".join(output.split())
        with pytest.raises(ValueError, match="in use by another psych201 process"):
            run_play(PlaySpec(task="bandit", model="cognitive", n_participants=2, n_trials=3), out)
    assert not (out / "parts").exists()
    # once it is gone, the folder (holding only the lock file) plays
    run_play(PlaySpec(task="bandit", model="cognitive", n_participants=2, n_trials=3), out)
    assert (out / "manifest.json").is_file()
    # and a folder that holds something else is refused before anything loads
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, output = cli_output("play", "--task", "bandit", "--model", str(tmp_path / "none"),
                              "--out", str(other))
    assert code == 2 and "not empty and not a play run" in " ".join(output.split()), output


def test_a_spec_out_of_range_or_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--participants must be at most 100000"):
        PlaySpec(task="bandit", model="cognitive", n_participants=10**8, n_trials=3).check()
    with pytest.raises(ValueError, match=r"--chunk must be at least 1"):
        PlaySpec(task="bandit", model="cognitive", n_participants=2, n_trials=3, chunk=0).check()
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    code, output = cli_output("play", "--task", "bandit", "--model", str(tmp_path / "none"),
                              "-n", "2", "--out", str(a_file))
    assert code == 2 and "a file, not a folder" in " ".join(output.split()), output
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("manifest", ['{"spec": []}', "[1]", "{", '{"kind": "other"}'])
def test_a_folder_with_a_foreign_manifest_is_refused_in_one_line(tmp_path: Path,
                                                                 manifest: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(manifest)
    code, output = cli_output("play", "--task", "bandit", "--model", "cognitive", "-n", "2",
                              "--out", str(out))
    assert code == 2 and "not a play manifest" in " ".join(output.split()), output
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_truncated_or_corrupted_chunk_is_played_again_not_assembled(tmp_path: Path) -> None:
    spec = PlaySpec(task="bandit", model="cognitive", n_participants=6, n_trials=4, chunk=2)
    out = tmp_path / "run"
    first = run_play(spec, out)
    before = first.transcripts.read_bytes(), first.choices.read_bytes()
    parts = out / "parts"
    # a table cut short (not parquet any more) and a transcript part that lost its last line
    table = parts / "participants-000003-000004.parquet"
    table.write_bytes(table.read_bytes()[:100])
    lines = parts / "participants-000005-000006.jsonl"
    lines.write_text(lines.read_text().splitlines(keepends=True)[0])
    (out / "choices.parquet").write_bytes(b"garbage")
    again = run_play(spec, out)
    assert (again.resumed_chunks, again.replayed_chunks) == (1, 2)
    assert (again.transcripts.read_bytes(), again.choices.read_bytes()) == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chunks_replayed"] == 2


def test_an_adapter_whose_base_is_missing_is_refused_before_anything_loads(
    tmp_path: Path,
) -> None:
    from psych201.lab.adapter import CARD_FILE, AdapterCard
    from psych201.lab.settings import TrainSettings

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    settings = TrainSettings(recipe="instruct", steps=3)
    card = AdapterCard(name="a", base=str(tmp_path / "gone"), base_sha256="0" * 64,
                       recipe="instruct", post_training=settings.post_training, data={},
                       settings=settings.to_dict(), steps=3, seed=0, losses=(1.0,))
    (adapter / CARD_FILE).write_text(json.dumps(card.to_dict()))
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    code, output = cli_output("play", "--task", "bandit", "--model", str(adapter), "-n", "2",
                              "--out", str(tmp_path / "run"))
    assert code == 2, output
    assert f"the adapter's base model '{tmp_path / 'gone'}' is not" in " ".join(output.split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "maze"], "unknown task 'maze'; choose one of bandit"),
        (["--task", "bandit", "--engine", "openai"], "use one that does: hf, llamacpp"),
        (["--task", "bandit", "--engine", "oracle"], "use one that does: hf, llamacpp"),
        (["--task", "bandit", "--policy", "argmax"], "choose one of sample, greedy"),
        # a typo of -n must not start a run of years
        (["--task", "bandit", "-n", "100000001"], "less than or equal to 100000"),
        (["--task", "bandit", "--chunk", "0"], "greater than or equal to 1"),
        (["--task", "bandit", "--seed", str(2**40)], "less than or equal to 4294967295"),
        # was exit 70 from torch after the folder was taken
        (["--task", "bandit", "--device", "banana"], "--device must be cpu, cuda, cuda:N, mps"),
    ],
)
def test_bad_input_is_one_line_before_anything_loads(
    args: list[str], message: str, tmp_path: Path
) -> None:
    # the model does not exist: a refusal that got as far as loading would say so instead
    code, output = cli_output("play", "--model", str(tmp_path / "no-such-model"),
                              "--out", str(tmp_path / "run"), *args)
    assert code == 2, output
    assert message in " ".join(output.replace("│", " ").split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["cache", "batch"])
def test_a_language_model_plays_in_closed_loop(tiny_dir: Path, tmp_path: Path, mode: str) -> None:
    spec = PlaySpec(task="bandit", model=str(tiny_dir), n_participants=5, n_trials=6, chunk=5)
    loaded = language_model_players(spec, mode=mode)
    result = run_play(spec, tmp_path / "run", make_players=loaded.make_players,
                      engine_info=loaded.engine_info, model_info=loaded.model_info)
    (source,) = discover_studies(result.transcripts.parent)
    sessions = list(iter_sessions(source))
    assert len(sessions) == 5 and all(len(s.responses) == 6 for s in sessions)
    choices = pd.read_parquet(result.choices)
    # the model's own distribution, renormalised over the two offered letters
    probs = np.array([np.exp(v).sum() for v in choices["option_logprobs"]])
    np.testing.assert_allclose(probs, 1.0, atol=1e-9)
    assert (choices["option_mass"] < 0).all()
    # the transcript's responses are the table's choices, in order
    first = choices[choices["participant"] == "1"].sort_values("response_index")
    assert [r.text for r in sessions[0].responses] == first["choice"].tolist()
    # a fresh player scoring one participant's prompt alone (no cache, no batch) agrees
    engine = language_model_players(spec, mode="batch")
    alone = engine.make_players()
    text = sessions[2].text
    cut = sessions[2].responses[3].start  # the prompt of participant 3's fourth response
    row = choices[(choices["participant"] == "3") & (choices["response_index"] == 3)].iloc[0]
    (solo,) = alone.option_logprobs([0], [text[:cut]], [ChoicePoint("", tuple(row["options"]))])
    np.testing.assert_allclose(solo, row["option_logprobs"], atol=1e-5)
    engine.close()
    loaded.close()


def test_a_model_that_mostly_answers_something_else_is_named(tiny_dir: Path,
                                                            tmp_path: Path) -> None:
    # A random tiny model spreads its probability over its whole vocabulary: the offered letters
    # get little of it, and play says so (threshold stated) instead of renormalising silently.
    code, output = cli_output("play", "--task", "reversal", "--model", str(tiny_dir), "-n", "3",
                              "--trials", "3", "--chunk", "2", "--out", str(tmp_path / "run"))
    assert code == 0, output
    # a line per finished chunk, so a long run's log shows its pace
    assert "participants 1–2: 6 responses in" in output
    assert "participants 3–3: 3 responses in" in output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    choices = pd.read_parquet(tmp_path / "run" / "choices.parquet")
    assert manifest["option_mass"] == pytest.approx(np.exp(choices["option_mass"]).mean())
    assert manifest["option_mass"] < 0.5
    flat = " ".join(output.split())
    assert "probability on the offered options on average (threshold 50%)" in flat


@pytest.mark.parametrize(("answer", "options", "picked"), [
    ("A>>. You", ("A", "B"), 0),
    (" B>>", ("A", "B"), 1),
    ("I choose machine B.", ("A", "B"), 1),
    ("the left one", ("A", "B"), None),
])
def test_generated_answers_are_parsed_into_options(answer: str, options: tuple[str, ...],
                                                   picked: int | None) -> None:
    assert parse_answer(answer, options) == picked


def test_parse_failures_are_named_counted_and_fail_the_run_above_the_threshold(
    tiny_dir: Path, tmp_path: Path
) -> None:
    # A random tiny model writes no letter it is offered: every answer is a parse failure,
    # named one line each, replaced by a random choice, and the run fails (exit 1) naming the
    # rate and the threshold; its transcripts are still written.
    code, output = cli_output("play", "--task", "bandit", "--model", str(tiny_dir), "-n", "2",
                              "--trials", "3", "--policy", "generate",
                              "--out", str(tmp_path / "run"))
    flat = " ".join(output.split())
    assert code == 1, output
    assert flat.count("parse failure: participant seat") == 6
    assert ("6 of 6 generated answers (100%) named no offered option, above the threshold of 10%"
            in flat)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["parse_failures"] == 6 and manifest["parse_failure_threshold"] == 0.1
    choices = pd.read_parquet(tmp_path / "run" / "choices.parquet")
    assert choices["generated"].notna().all()


def test_a_chat_model_generates_its_answer_through_its_chat_template() -> None:
    import copy

    import torch

    from psych201.scoring.hf_generate import Generator
    from tiny_models import byte_bpe_tokenizer, tiny_llama

    tokenizer = copy.deepcopy(byte_bpe_tokenizer())
    tokenizer.chat_template = ("{% for m in messages %}user: {{ m['content'] }}\n{% endfor %}"
                               "assistant:")
    torch.manual_seed(0)
    generator = Generator(tiny_llama(tokenizer), tokenizer)
    assert generator.chat
    # the prompt as the user's message, the options named (the ids, not a BatchEncoding's keys)
    ids = generator._input("Trial 1: You chose machine <<", ("C", "L"))
    assert all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids).endswith("Answer with exactly one of: C, L.\nassistant:")
    assert isinstance(generator.answer("Trial 1: You chose machine <<", ("C", "L")), str)


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_batched_caches_give_each_participant_its_transcript_alone(architecture: str) -> None:
    """Rows of one batched cache (with pads, superseded tokens, an idle row, a transcript
    rewritten far back and, for Gemma, a sliding window the transcripts outgrow, whose old slots
    the cache drops) give the log-probs of each context run alone."""
    import torch

    from psych201.scoring.hf_options import CachedOptionScorer
    from tiny_models import byte_bpe_tokenizer, tiny_gemma3, tiny_llama

    tokenizer = byte_bpe_tokenizer()
    model = (tiny_llama if architecture == "llama" else tiny_gemma3)(tokenizer)
    rng = np.random.default_rng(1)
    candidates = [7, 9, 11]
    for rows in (1, 3):
        scorer = CachedOptionScorer(model, rows=rows, margin=4)
        shared = [int(t) for t in rng.integers(5, 500, 20)]  # the instructions, run once
        contexts = {f"p{i}": list(shared) for i in range(5)}
        for step in range(12):
            for context in contexts.values():
                if rng.random() < 0.3:  # the tokenizer merged the last token(s) with new text
                    del context[-int(rng.integers(1, 3)):]
                context += [int(t) for t in rng.integers(5, 500, int(rng.integers(1, 9)))]
            if step == 9:  # rewritten behind the slots the sliding layers dropped
                del contexts["p1"][12:]
                contexts["p1"] += [int(t) for t in rng.integers(5, 500, 30)]
            playing = [k for k in contexts if step < 7 or k != "p4"]  # p4 has finished
            got = scorer.score_options([(k, contexts[k], candidates) for k in playing])
            for key, logprobs in zip(playing, got, strict=True):
                with torch.inference_mode():
                    logits = model(input_ids=torch.tensor([contexts[key]])).logits[0, -1]
                alone = torch.log_softmax(logits.float(), -1)[candidates].double().numpy()
                np.testing.assert_allclose(logprobs, alone, atol=2e-5)
        assert len(contexts["p0"]) > 3 * 16  # well past the tiny Gemma's sliding window
        if architecture == "gemma3":
            assert all(batch.dropped > 0 for batch in scorer._batches)
