"""Option sets read from transcripts: real sessions of every study, and the rules in isolation."""

from __future__ import annotations

import itertools

import pytest

from paths import DATA, needs_data
from psych201.data.markers import parse_responses
from psych201.data.readers import iter_sessions
from psych201.data.records import Session
from psych201.prompts.options import options_for_text, response_options

#: Studies whose every response offers a readable option set (share of responses covered).
FULL_COVERAGE = (
    "busch2024_stroop",
    "dezfouli2019",
    "franke2024bayesian",
    "frey2017lotteries",
    "guenther2020LDT",
    "guenther2022relational",
    "jansen2021logic",
    "nussenbaum2023novelty",
    "olschewski2024skewness",
    "sandbrink2024metacontrol",
    "spektor2024lossaversion",
    "thoma2025problearn",
    "xu2023augmenting",
)
#: Free text or continuous answers: nothing to read, so nothing may be claimed.
NO_OPTIONS = (
    "guenther2023associations_individual",
    "guenther2024substitutions",
    "haridi2024memorySemanticContext",
    "little2024functionestimation",
)


def _first(study: str, n: int) -> list[Session]:
    return list(itertools.islice(iter_sessions(DATA / study), n))


def _check_sets(sessions: list[Session]) -> tuple[int, int]:
    """(responses, responses with a set); every response with a set must be inside it."""
    total = covered = 0
    for session in sessions:
        options = response_options(session)
        assert len(options) == len(session.responses)
        for response, offered in zip(session.responses, options, strict=True):
            total += 1
            if offered is not None:
                covered += 1
                assert response.text in offered, (session.study, session.line, response.index)
                assert len(offered) >= 2
    return total, covered


@needs_data
@pytest.mark.parametrize("study", FULL_COVERAGE)
def test_discrete_studies_have_a_set_for_every_response(study: str) -> None:
    total, covered = _check_sets(_first(study, 3))
    assert total > 0 and covered == total


@needs_data
@pytest.mark.parametrize("study", NO_OPTIONS)
def test_free_text_studies_claim_no_options(study: str) -> None:
    total, covered = _check_sets(_first(study, 3))
    assert total > 0 and covered == 0


@needs_data
def test_mixed_studies_cover_their_structured_answers() -> None:
    # Public goods: contributions are a stated range; punish/reward actions are free-form.
    total, covered = _check_sets(_first("alsobay2025publicGoodsGame", 20))
    assert 0.3 < covered / total < 0.9
    # Metascience: 0-100 scales, the certainty scale and the two buttons are all stated.
    total, covered = _check_sets(_first("schiekiera2025metascience", 3))
    assert covered == total


@needs_data
def test_real_sets_are_the_ones_the_instructions_state() -> None:
    dezfouli = _first("dezfouli2019", 1)[0]
    assert set(response_options(dezfouli)) == {frozenset({"L", "R"})}
    stroop = _first("busch2024_stroop", 1)[0]
    assert set(response_options(stroop)) == {frozenset({"left", "down", "right"})}
    sandbrink = _first("sandbrink2024metacontrol", 1)[0]
    assert set(response_options(sandbrink)) == {frozenset({"M", "K", "V"})}  # observe/blue/red
    franke = _first("franke2024bayesian", 1)[0]
    assert response_options(franke)[0] == frozenset({"X", "I", "F", "B"})
    relational = _first("guenther2022relational", 1)[0]
    first = response_options(relational)[0]
    assert first is not None and len(first) == 16 and "crest CAUSES take" in first
    assert "take HAS crest" in first and "crest HAS take" in first  # word1 HAS word2 and back
    jansen = _first("jansen2021logic", 1)[0]
    sets = response_options(jansen)
    assert sets[0] == frozenset(str(i) for i in range(21))  # "How many of the 20 questions"
    assert sets[2] == frozenset(str(i) for i in range(11))  # "On a scale of 0 to 10"
    assert sets[4] == frozenset({"A", "Q", "T", "Z", "F"})
    final = sets[-1]  # the closing self-assessment is numeric, not one of the keys
    assert final is not None and len(final) in (11, 21, 101) and "A" not in final


def _options(text: str) -> list[frozenset[str] | None]:
    return options_for_text(text, parse_responses(text))


def test_local_list_beats_an_earlier_declaration() -> None:
    text = (
        "Press the Q key for yes and press the P key for no.\nItem one. You press <<Q>>.\n"
        "Which word?\nD: dog\nC: cat\nYou press <<C>>."
    )
    assert _options(text) == [frozenset({"Q", "P"}), frozenset({"D", "C"})]


def test_global_declaration_skips_answers_of_another_shape() -> None:
    text = (
        "Your two options are J and K.\nYou press <<J>>.\nHow confident are you?\nYou say <<80>>.\n"
        "Describe it.\nYou write <<a blue shape>>."
    )
    assert _options(text) == [frozenset({"J", "K"}), None, None]


def test_declarations_follow_the_transcript() -> None:
    text = (
        "The stocks' names are P and Y.\nYou choose Stock <<P>>.\n"
        "The stocks' names are A and W.\nYou choose Stock <<W>>."
    )
    assert _options(text) == [frozenset({"P", "Y"}), frozenset({"A", "W"})]


def test_options_never_come_from_what_the_participant_wrote() -> None:
    # The response "press the X key or press the Y key" must not declare options for later.
    text = "Type anything. You write <<press the X key or press the Y key>>.\nNow press <<X>>."
    assert _options(text) == [None, None]


def test_word_keys_scales_buttons_and_contributions() -> None:
    assert _options("press: left for red, down for green, right for blue. You press <<down>>.") == [
        frozenset({"left", "down", "right"})
    ]
    scale = _options("Rate it on a scale from 1 to 7. You enter <<5>>.")[0]
    assert scale == frozenset(str(i) for i in range(1, 8))
    assert _options('Go on by clicking "Continue" or clicking "Back". You enter <<Back>>.') == [
        frozenset({"Continue", "Back"})
    ]
    coins = _options(
        "You can choose to either contribute all of your 20 coins or nothing.\n"
        "## Round 1:\n### Contribution Stage: Decide how much to contribute.\n"
        "You contributed <<20 coins>>.\n### Deduction Stage\nYou <<did not deduct coins>>."
    )
    assert coins == [frozenset({"0 coins", "20 coins"}), None]
    assert _options("Pick a number on a scale from 0 to 5000. You say <<17>>.") == [None]
