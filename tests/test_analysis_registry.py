"""The model registry: the paper's checkpoints exactly as PROTOCOL §4, local models, user files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from psych201.analysis.registry import RegistryError, load_registry, read_registry_file

REGISTRY = load_registry()


def test_the_paper_has_101_checkpoints_and_65_pairs_by_type() -> None:
    paper = [m for m in REGISTRY if m.paper and m.family != "Centaur"]
    assert len(paper) == 101
    pairs = [p for p in REGISTRY.pairs() if REGISTRY[p.post].paper and p.post_training != "human"]
    assert len(pairs) == 65
    assert Counter(p.type_label for p in pairs) == {
        "Instruction-tuned": 25, "Reasoning": 17, "Vision": 14, "Code": 6, "Math": 3}


@pytest.mark.parametrize(("post", "base"), [
    ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-1.7B-Base"),
    ("Qwen/Qwen3-VL-2B-Thinking", "Qwen/Qwen3-1.7B-Base"),
    ("Qwen/Qwen3-VL-32B-Instruct", "Qwen/Qwen3-14B-Base"),
    ("Qwen/Qwen3-VL-8B-Thinking", "Qwen/Qwen3-8B-Base"),
    ("allenai/Olmo-3.1-32B-Instruct", "allenai/Olmo-3-1125-32B"),
    ("allenai/Olmo-3-7B-Think", "allenai/Olmo-3-1025-7B"),
    ("unsloth/Llama-3.2-11B-Vision", "meta-llama/Llama-3.1-8B"),
    ("unsloth/Llama-3.2-90B-Vision", "meta-llama/Llama-3.1-70B"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "meta-llama/Llama-3.1-8B"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "Qwen/Qwen2.5-32B"),
    ("Qwen/Qwen2.5-Math-72B", "Qwen/Qwen2.5-72B"),
    ("Qwen/Qwen1.5-1.8B-Chat", "Qwen/Qwen1.5-1.8B"),
    ("marcelbinz/Llama-3.1-Centaur-70B-adapter", "unsloth/Meta-Llama-3.1-70B-bnb-4bit"),
    ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M"),
])
def test_pairs_follow_the_protocol_table(post: str, base: str) -> None:
    assert REGISTRY[post].base == base
    assert REGISTRY[base].is_base


def test_models_without_a_released_base() -> None:
    for name in ("Qwen/Qwen3-32B", "Qwen/Qwen3.5-27B"):
        model = REGISTRY[name]
        assert model.base is None and model.post_training == "reasoning"
        assert REGISTRY.pair_for(name) is None


def test_local_models() -> None:
    gemma = REGISTRY["gemma-3-270m"]
    smol = REGISTRY["smollm2-135m-instruct"]
    assert gemma.local and gemma.is_base and gemma.params_b == pytest.approx(0.27)
    assert smol.local and smol.post_training == "instruct"
    assert not REGISTRY["HuggingFaceTB/SmolLM2-135M"].local
    assert {m.id for m in REGISTRY if m.local} == {"gemma-3-270m", "smollm2-135m-instruct"}


@pytest.mark.parametrize("name", [
    "Qwen/Qwen3-14B-Base", "Qwen-Qwen3-14B-Base.pth", "qwen/qwen3-14b-base", "Qwen3-14B-Base",
    "/models/cache/Qwen3-14B-Base/",
])
def test_names_resolve_to_one_checkpoint(name: str) -> None:
    assert REGISTRY[name].id == "Qwen/Qwen3-14B-Base"


def test_aliases_and_unknown_names() -> None:
    assert REGISTRY["google/gemma-3-270m"].id == "gemma-3-270m"
    assert REGISTRY["HuggingFaceTB/SmolLM2-135M-Instruct"].id == "smollm2-135m-instruct"
    assert REGISTRY.get("Qwen/Qwen9-1B") is None
    with pytest.raises(KeyError, match="psych201 models"):
        REGISTRY["Qwen/Qwen9-1B"]


def test_line_labels_separate_variant_lines() -> None:
    assert REGISTRY["Qwen/Qwen3-VL-8B-Instruct"].line_label == "Vision (VL)"
    assert REGISTRY["Qwen/Qwen3-VL-8B-Thinking"].line_label == "Vision (VL-Thinking)"
    assert REGISTRY["Qwen/Qwen3-8B"].line_label == "Reasoning"
    assert REGISTRY["unsloth/Llama-3.2-11B-Vision"].line_label == "Vision"


def test_user_file_adds_and_overrides(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(
        "models:\n"
        "  - {id: my-org/tiny-base, family: Tiny, params_b: 0.01, post_training: base}\n"
        "  - {id: my-org/tiny-chat, family: Tiny, params_b: 0.01, post_training: instruct,\n"
        "     base: my-org/tiny-base}\n"
        "  - {id: gemma-3-270m, family: Gemma 3, params_b: 0.268, post_training: base,\n"
        "     local: true}\n"
    )
    registry = load_registry(user)
    assert len(registry) == len(REGISTRY) + 2
    assert registry["tiny-chat"].base == "my-org/tiny-base"
    assert registry["gemma-3-270m"].params_b == pytest.approx(0.268)
    assert any(p.post == "my-org/tiny-chat" for p in registry.pairs())


@pytest.mark.parametrize(("text", "message"), [
    ("models:\n  - {id: a, family: F, post_training: base}\n  - {id: b, family: F, "
     "post_training: chat}\n", "mine.yaml:3: invalid model entry (post_training"),
    ("models:\n  - {id: a, family: F, post_training: base, size: 3}\n",
     "mine.yaml:2: invalid model entry (size: Extra inputs are not permitted"),
    ("models:\n  - {id: a, family: F, post_training: base}\n  - {id: a, family: F, "
     "post_training: base}\n", "mine.yaml:3: duplicate id 'a'"),
    ("models:\n  - {id: a, family: F, post_training: base, params_b: -1}\n",
     "mine.yaml:2: invalid model entry (params_b"),
    ("models: [oops\n", "mine.yaml:2: not valid YAML"),
    ("format: psych201-models/9\nmodels: []\n", "unknown registry format"),
    ("models:\n  - {id: a, family: F, post_training: instruct, base: nowhere}\n",
     "pairs with base 'nowhere', which is not in the registry"),
])
def test_bad_user_files_name_file_line_and_reason(tmp_path: Path, text: str,
                                                  message: str) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(text)
    with pytest.raises(RegistryError) as info:
        load_registry(user)
    assert message in str(info.value)


def test_packaged_file_is_valid_and_complete() -> None:
    entries = read_registry_file(Path(__file__).parents[1] / "src" / "psych201" / "analysis"
                                 / "models.yaml")
    assert len(entries) == len(REGISTRY)
    assert all(m.params_b for m in entries)
    assert all(m.family for m in entries)
