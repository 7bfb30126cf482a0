"""The post-training lab's data: loss masks, the split, generated dialogues, preference pairs,
registry entries, cards and plans (no training here; see test_lab_train)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from paths import DATA
from psych201.analysis.registry import load_registry
from psych201.data.markers import parse_responses
from psych201.data.readers import iter_sessions
from psych201.data.records import Session
from psych201.data.split import held_out_participants, iter_split
from psych201.lab.adapter import CARD_FILE, AdapterCard, read_card
from psych201.lab.assistant import (
    TASKS,
    assistant_dialogues,
    instruct_examples,
    render_plain,
)
from psych201.lab.examples import example_from_spans, human_examples
from psych201.lab.experiment import read_plan, resolve_data
from psych201.lab.normative import normative_lottery_choice, normative_responses
from psych201.lab.preference import normative_session, preference_data, simulated_sessions
from psych201.lab.registry_entry import registry_entries, write_registry_fragment
from psych201.lab.settings import LabError, TrainSettings
from tiny_models import byte_bpe_tokenizer, merging_bpe_tokenizer

PLAN = Path(__file__).parents[1] / "studies" / "posttraining_lab.yaml"
STUDY = "franke2024bayesian"  # 302 short sessions: the whole study in well under a second


def _decode(tokenizer: Any, ids: Any, **kw: Any) -> str:
    return str(tokenizer.decode(ids, clean_up_tokenization_spaces=False, **kw))


@pytest.fixture(scope="module")
def train_sessions() -> list[Session]:
    return list(iter_split(DATA / STUDY, "train", seed=0))


@pytest.mark.parametrize("make_tokenizer", [byte_bpe_tokenizer, merging_bpe_tokenizer])
def test_human_mask_is_exactly_the_training_responses(
    make_tokenizer: Any, train_sessions: list[Session]
) -> None:
    tokenizer = make_tokenizer()
    data = human_examples(DATA, tokenizer, studies=[STUDY], split_seed=0, max_tokens=100_000)
    by_key = {s.key: s for s in train_sessions}
    # Every training participant is used, once; no test participant is ever read.
    all_keys = [s.key for s in iter_sessions(DATA / STUDY)]
    test = held_out_participants(all_keys, seed=0)
    assert len(test) == 30
    used = [e.session for e in data.examples]
    assert len(used) == len(set(used)) == len(by_key) == len(all_keys) - len(test)
    assert set(used) == set(by_key)
    assert not set(used) & test
    for example in data.examples:
        session = by_key[example.session]  # type: ignore[index]
        # The masked tokens spell exactly the responses (no marker, no context character) ...
        masked = _decode(tokenizer, example.token_ids[example.target_positions])
        assert masked == "".join(r.text for r in session.responses)
        assert example.n_spans == len(session.responses) and example.n_cut == 0
        # ... and the unmasked ones spell everything else.
        rest = np.setdiff1d(np.arange(example.n_tokens), example.target_positions)
        outside = _decode(tokenizer, example.token_ids[rest], skip_special_tokens=True)
        assert len(outside) == len(session.text) - sum(len(r.text) for r in session.responses)
    assert data.description["split"] == "train"
    assert data.description["studies"][STUDY]["train_sessions"] == 272


def test_human_budget_drops_responses_that_do_not_fit(train_sessions: list[Session]) -> None:
    tokenizer = byte_bpe_tokenizer()
    data = human_examples(DATA, tokenizer, studies=[STUDY], max_tokens=1000)
    by_key = {s.key: s for s in train_sessions}
    cut_any = False
    for example in data.examples:
        session = by_key[example.session]  # type: ignore[index]
        assert example.n_tokens <= 1000 and example.target_positions.max() < 1000
        assert example.n_spans + example.n_cut == len(session.responses)
        kept = "".join(r.text for r in session.responses[: example.n_spans])
        assert _decode(tokenizer, example.token_ids[example.target_positions]) == kept
        cut_any |= example.n_cut > 0
    assert cut_any


def test_human_subset_is_seeded_and_capped() -> None:
    tokenizer = byte_bpe_tokenizer()
    a = human_examples(DATA, tokenizer, studies=[STUDY], max_sessions_per_study=25, sample_seed=3)
    b = human_examples(DATA, tokenizer, studies=[STUDY], max_sessions_per_study=25, sample_seed=3)
    c = human_examples(DATA, tokenizer, studies=[STUDY], max_sessions_per_study=25, sample_seed=4)
    keys = [[e.session for e in d.examples] for d in (a, b, c)]
    assert len(keys[0]) == 25 and keys[0] == keys[1] and keys[0] != keys[2]


def test_unknown_study_is_named() -> None:
    with pytest.raises(LabError, match="no study named nosuchstudy"):
        human_examples(DATA, byte_bpe_tokenizer(), studies=["nosuchstudy"])


def test_span_straddling_a_token_is_still_exact() -> None:
    # The merging tokenizer fuses markers with letters; alignment must still mask only "B".
    tokenizer = merging_bpe_tokenizer()
    text = "You chose <<B>>. You press <<left>>.\n"
    spans = parse_responses(text)
    assert [s.text for s in spans] == ["B", "left"]
    example = example_from_spans(text, spans, tokenizer, key="x", max_tokens=1000)
    assert _decode(tokenizer, example.token_ids[example.target_positions]) == "Bleft"


# -- instruct --------------------------------------------------------------------------------
def test_dialogues_are_seeded_and_prefix_stable() -> None:
    assert assistant_dialogues(30, seed=1) == assistant_dialogues(30, seed=1)
    assert assistant_dialogues(30, seed=1)[:10] == assistant_dialogues(10, seed=1)
    assert assistant_dialogues(30, seed=1) != assistant_dialogues(30, seed=2)
    kinds = {_task_of(t.user) for d in assistant_dialogues(300, seed=0) for t in d}
    assert {"arithmetic", "lottery", "bandit", "other"} == kinds
    assert len(TASKS) >= 10


def _task_of(question: str) -> str:
    if question.startswith("Lottery"):
        return "lottery"
    if question.startswith("Machine"):
        return "bandit"
    if re.match(r"(What is \d+ (\+|minus)|Can you multiply)", question):
        return "arithmetic"
    return "other"


def test_assistant_answers_are_correct() -> None:
    for dialogue in assistant_dialogues(400, seed=5):
        for turn in dialogue:
            if turn.user.startswith("Lottery"):
                labels = re.findall(r"^Lottery ([A-Z]):", turn.user, re.M)
                best = normative_lottery_choice(turn.user, labels[0])
                assert best is not None and f"Choose Lottery {best}." in turn.assistant
            if m := re.fullmatch(r"What is (\d+) \+ (\d+)\?", turn.user):
                assert turn.assistant.endswith(f"= {int(m[1]) + int(m[2])}.")
            if m := re.fullmatch(r"Write '(\w+)' backwards\.", turn.user):
                assert turn.assistant.endswith(f"'{m[1][::-1]}'.")


def test_instruct_mask_covers_the_answers_only() -> None:
    tokenizer = byte_bpe_tokenizer()
    data = instruct_examples(tokenizer, n_dialogues=40, seed=0, max_tokens=4096)
    dialogues = assistant_dialogues(40, seed=0)
    assert len(data.examples) == 40
    for example, dialogue in zip(data.examples, dialogues, strict=True):
        text, spans = render_plain(dialogue)
        assert text.count("User: ") == len(dialogue) == len(spans)
        masked = _decode(tokenizer, example.token_ids[example.target_positions])
        assert masked == "".join(t.assistant for t in dialogue)


def test_chat_template_needs_one() -> None:
    with pytest.raises(LabError, match="chat template"):
        instruct_examples(byte_bpe_tokenizer(), n_dialogues=2, template="chat")


# -- normative answers and preference pairs --------------------------------------------------
def test_normative_lottery_formats() -> None:
    simulated = "Lottery P: -100 points with 90% or 5 points with 10%.\n" \
                "Lottery O: -75 points with 55% or 45 points with 45%.\nYou choose "
    assert normative_lottery_choice(simulated, "O") == "O"  # EV -89.5 vs -21
    frey = "Lottery A: gain 50 points with a 70% chance or gain 20 points with a 30% chance.\n" \
           "Lottery B: lose 90 points with a 65% chance or gain 10 points with a 35% chance.\n"
    assert normative_lottery_choice(frey, "B") == "A"
    tie = "Lottery A: 10 points with 50% or 0 points with 50%.\n" \
          "Lottery B: 5 points with 100% or 0 points with 0%.\n"
    assert normative_lottery_choice(tie, "A") is None
    assert normative_lottery_choice("Press a key.", "A") is None


def test_normative_answers_on_real_lotteries() -> None:
    session = next(iter_sessions(DATA / "frey2017lotteries"))
    answers = normative_responses(session.text, session.responses)
    assert len(answers) == len(session.responses) == 50
    assert sum(a is not None for a in answers) >= 45
    assert {a for a in answers if a} <= {"A", "B"}


def test_preference_pairs_differ_only_where_the_human_was_not_normative() -> None:
    tokenizer = byte_bpe_tokenizer()
    sessions = simulated_sessions(12, seed=1000)
    data = preference_data(tokenizer, n_simulated=12, simulate_seed=1000, max_tokens=100_000)
    assert data.pairs and len(data.pairs) <= 12
    by_key = {f"{s.study}/{s.experiment}/{s.participant}/line{s.line}": s for s in sessions}
    for pair in data.pairs:
        session = by_key[pair.key]
        text, spans, changed = normative_session(session)
        assert changed and len(text) == len(session.text)
        humans = [s.text for s in session.responses if s.index in set(changed)]
        normative = [s.text for s in spans if s.index in set(changed)]
        assert all(h != n for h, n in zip(humans, normative, strict=True))
        assert _decode(tokenizer, pair.rejected.token_ids[pair.rejected.target_positions]) \
            == "".join(humans)
        assert _decode(tokenizer, pair.chosen.token_ids[pair.chosen.target_positions]) \
            == "".join(normative)
        # Outside the changed responses both sequences are the same text.
        diff = [i for i, (a, b) in enumerate(zip(text, session.text, strict=True)) if a != b]
        assert len(diff) == len(changed)


# -- registry entries, cards, plans ----------------------------------------------------------
def _card(name: str, recipe: str, base: str = "gemma-3-270m") -> AdapterCard:
    settings = TrainSettings(recipe=recipe, steps=3)  # type: ignore[arg-type]
    return AdapterCard(
        name=name, base=base, base_sha256="0" * 64, recipe=recipe,
        post_training=settings.post_training, data={"studies": {STUDY: {}}},
        settings=settings.to_dict(), steps=3, seed=0, losses=(2.0, 1.5, 1.2),
    )


def test_registry_fragment_pairs_adapters_with_their_base(tmp_path: Path) -> None:
    cards = [_card("g-human", "human"), _card("g-instruct", "instruct"),
             _card("g-pref", "preference")]
    path = write_registry_fragment(cards, tmp_path / "registry.yaml")
    registry = load_registry(path)
    pairs = {p.post: p for p in registry.pairs()}
    assert pairs["g-human"].base == "gemma-3-270m" and pairs["g-human"].post_training == "human"
    assert pairs["g-instruct"].post_training == "instruct"
    assert registry["g-pref"].line == "LoRA preference (DPO)"
    assert registry["g-human"].family == registry["gemma-3-270m"].family
    # A base the packaged registry does not know gets its own entry, so the file still loads.
    local = registry_entries([_card("t-human", "human", base="/tmp/some/tiny-model")])
    assert [e["post_training"] for e in local] == ["base", "human"]


def test_card_round_trip_and_errors(tmp_path: Path) -> None:
    card = _card("g-human", "human")
    (tmp_path / CARD_FILE).write_text(json.dumps(card.to_dict()))
    assert read_card(tmp_path) == card
    assert read_card(tmp_path).train_settings == TrainSettings(recipe="human", steps=3)
    (tmp_path / CARD_FILE).write_text('{"format": "psych201-adapter/1",\n "name": }')
    with pytest.raises(LabError, match=rf"{CARD_FILE}:2: invalid JSON"):
        read_card(tmp_path)
    data = card.to_dict() | {"surprise": 1}
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(LabError, match="unknown card field"):
        read_card(tmp_path)
    with pytest.raises(LabError, match="not an adapter folder"):
        read_card(tmp_path / "missing")


def test_settings_are_checked() -> None:
    with pytest.raises(LabError, match="unknown recipe"):
        TrainSettings(recipe="rlhf")  # type: ignore[arg-type]
    with pytest.raises(LabError, match="steps"):
        TrainSettings(recipe="human", steps=0)
    with pytest.raises(LabError, match=r"unknown training setting\(s\) stepz \(known: "):
        TrainSettings.from_dict({"recipe": "human", "stepz": 3})


def test_shipped_plan_is_valid() -> None:
    plan = read_plan(PLAN)
    data = resolve_data(plan, PLAN)
    assert data == DATA.resolve()
    names = {p.name for p in data.iterdir() if p.is_dir()}
    assert set(plan.studies) <= names
    recipes = {a.recipe for a in plan.adapters}
    assert {"instruct", "human"} <= recipes
    for adapter in plan.adapters:
        settings = plan.train_settings(adapter)
        assert settings.steps * settings.batch_size <= 400  # the documented CPU budget


def test_bad_plan_names_file_and_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(PLAN.read_text())
    raw["adapters"][0]["settings"]["stepz"] = 3
    bad = tmp_path / "plan.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(LabError, match=r"plan.yaml: adapter .+: unknown training setting"):
        read_plan(bad)
    raw = yaml.safe_load(PLAN.read_text()) | {"colour": "red"}
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(LabError, match=r"plan.yaml: invalid plan \(colour"):
        read_plan(bad)
