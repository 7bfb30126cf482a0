"""Adapter folders: peft LoRA weights plus a card that says how to regenerate them.

An adapter folder holds

* ``adapter_model.safetensors`` and ``adapter_config.json`` — peft's own files (safetensors only:
  a folder with pickled ``adapter_model.bin`` weights is refused);
* ``psych201-adapter.json`` — the :class:`AdapterCard`: base model and its weights' SHA-256,
  recipe and registry post-training type, training data, settings (steps, seed, LoRA shape),
  the loss of every step, timings and library versions.

The card is enough to regenerate the adapter (same base, data, settings and seed), so large
adapters are never kept in the repository: :func:`save_adapter` refuses to write more than
:data:`MAX_REPO_ADAPTER_BYTES` of weights inside a git work tree, and by default adapters go to
the cache (``$PSYCH201_CACHE/adapters``).

:func:`load_adapter_model` loads base + adapter merged into plain weights (scoring needs no peft
at run time) and returns the scoring layer's :class:`~psych201.scoring.models.LoadedModel`, so an
adapter scores like any other checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psych201.lab.settings import LabError, TrainSettings
from psych201.scoring.model_files import cache_root, sha256_file
from psych201.scoring.models import LoadedModel, load_model

CARD_FILE = "psych201-adapter.json"
CARD_FORMAT = "psych201-adapter/1"
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
PICKLED_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")

#: Adapters larger than this are never written inside a git work tree (regenerate from a card).
MAX_REPO_ADAPTER_BYTES = 5_000_000


@dataclass(frozen=True)
class AdapterCard:
    """What an adapter is and how it was made (``psych201-adapter.json``)."""

    name: str
    base: str
    base_sha256: str
    recipe: str
    post_training: str
    data: dict[str, Any]
    settings: dict[str, Any]
    steps: int
    seed: int
    losses: tuple[float, ...]
    step_seconds: tuple[float, ...] = ()
    step_extra: tuple[dict[str, float], ...] = ()
    train_wall_s: float = 0.0
    n_trainable: int = 0
    n_sequences: int = 0
    n_target_tokens: int = 0
    adapter_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    format: str = CARD_FORMAT

    @property
    def train_settings(self) -> TrainSettings:
        return TrainSettings.from_dict(self.settings)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = list(self.losses)
        out["step_seconds"] = list(self.step_seconds)
        out["step_extra"] = [dict(e) for e in self.step_extra]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "card") -> AdapterCard:
        if data.get("format") != CARD_FORMAT:
            raise LabError(f"{where}: not a psych201 adapter card (format "
                           f"{data.get('format')!r}, expected {CARD_FORMAT!r})")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise LabError(f"{where}: unknown card field(s) {', '.join(unknown)}")
        fields = dict(data)
        try:
            for name in ("losses", "step_seconds"):
                fields[name] = tuple(float(v) for v in fields.get(name, ()))
            fields["step_extra"] = tuple(dict(e) for e in fields.get("step_extra", ()))
            card = cls(**fields)
            card.train_settings  # noqa: B018 - validates the settings block
        except (TypeError, ValueError) as exc:  # LabError is a ValueError: named once, here
            reason = str(exc).removeprefix(f"{where}: ")
            raise LabError(f"{where}: invalid adapter card ({reason})") from exc
        return card


def default_adapter_root() -> Path:
    """Where adapters go unless told otherwise: ``$PSYCH201_CACHE/adapters``."""
    return cache_root() / "adapters"


def git_work_tree(path: Path) -> Path | None:
    """The git work tree ``path`` (existing or not) lies in, if any."""
    here = Path(path).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def check_adapter_destination(out_dir: Path, n_bytes: int) -> None:
    """Refuse to put more than :data:`MAX_REPO_ADAPTER_BYTES` of weights in a git work tree."""
    tree = git_work_tree(out_dir)
    if tree is not None and n_bytes > MAX_REPO_ADAPTER_BYTES:
        raise LabError(
            f"{out_dir}: the adapter weights ({n_bytes / 1e6:.1f} MB) would be written inside the "
            f"git work tree {tree}; adapters over {MAX_REPO_ADAPTER_BYTES / 1e6:.0f} MB are never "
            f"kept in a repository — write it under {default_adapter_root()} (the default) or "
            "another folder outside the tree, and regenerate it from its card"
        )


def adapter_bytes(peft_model: Any) -> int:
    """Bytes of the adapter weights peft would save (trainable parameters)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    return int(sum(t.numel() * t.element_size() for t in state.values()))


def save_adapter(peft_model: Any, card: AdapterCard, out_dir: str | Path) -> AdapterCard:
    """Write the adapter and its card to ``out_dir`` (atomically); returns the card as written.

    An existing adapter folder at ``out_dir`` is replaced; any other existing folder is refused.
    """
    out = Path(out_dir).expanduser()
    check_adapter_destination(out, adapter_bytes(peft_model))
    if out.exists() and not (out / CARD_FILE).is_file():
        raise LabError(f"{out}: exists and is not an adapter folder; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The adapter's config names its base by the card's name, not by a local cache path.
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = card.base
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        staging = Path(tmp) / "adapter"
        # The vocabulary is never changed, so no embedding copies; "auto" would also query the
        # model hub for the base's config.
        peft_model.save_pretrained(staging, safe_serialization=True, save_embedding_layers=False)
        # peft's README is a hub model-card template; the psych201 card is the documentation.
        (staging / "README.md").unlink(missing_ok=True)
        written = _with_fields(card, adapter_sha256=sha256_file(staging / WEIGHTS_FILE))
        (staging / CARD_FILE).write_text(
            json.dumps(written.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    return written


def _with_fields(card: AdapterCard, **changes: Any) -> AdapterCard:
    data = card.to_dict()
    data.update(changes)
    return AdapterCard.from_dict(data)


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / CARD_FILE).is_file()


def read_card(path: str | Path) -> AdapterCard:
    """The card of adapter folder ``path`` (or of a card file); errors name the file."""
    p = Path(path)
    card_path = p / CARD_FILE if p.is_dir() else p
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LabError(f"{p}: not an adapter folder (no {CARD_FILE})") from exc
    except json.JSONDecodeError as exc:
        raise LabError(f"{card_path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:  # a binary file named as a card
        raise LabError(f"{card_path}: not an adapter card (not UTF-8 text)") from exc
    except (ValueError, RecursionError) as exc:  # a number too long, nesting too deep
        raise LabError(f"{card_path}: not an adapter card ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise LabError(f"{card_path}: expected a JSON object")
    return AdapterCard.from_dict(data, where=str(card_path))


def check_adapter_files(path: Path) -> None:
    """The folder has safetensors weights and a config, and no pickled weights."""
    pickled = [name for name in PICKLED_WEIGHTS if (path / name).exists()]
    if pickled:
        raise LabError(
            f"{path}: holds pickled adapter weights ({', '.join(pickled)}); psych201 never loads "
            "pickles — keep only adapter_model.safetensors"
        )
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (path / name).is_file():
            raise LabError(f"{path}: missing {name}")


def load_adapter_model(
    path: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Base + adapter of folder ``path``, merged, as a :class:`LoadedModel` ready to score.

    The base is loaded with :func:`~psych201.scoring.models.load_model` and must have the
    weights the adapter was trained on (SHA-256 from the card). ``model_id`` is the card's
    ``name`` (the registry id); ``file_sha256`` hashes base and adapter weights together.
    """
    from peft import PeftModel

    folder = Path(path).expanduser()
    card = read_card(folder)
    check_adapter_files(folder)
    base = load_model(card.base, dtype=dtype, device=device, cache_dir=cache_dir)
    if card.base_sha256 and base.file_sha256 != card.base_sha256:
        raise LabError(
            f"{folder}: trained on {card.base} with weights {card.base_sha256[:12]}…, but "
            f"{card.base} now loads weights {base.file_sha256[:12]}…; retrain the adapter"
        )
    adapter_sha = sha256_file(folder / WEIGHTS_FILE)
    if card.adapter_sha256 and adapter_sha != card.adapter_sha256:
        raise LabError(f"{folder / WEIGHTS_FILE}: SHA-256 differs from the card's; file changed")
    peft_model = PeftModel.from_pretrained(base.model, str(folder), is_trainable=False)
    merged = peft_model.merge_and_unload()
    merged.eval()
    combined = hashlib.sha256(f"{base.file_sha256}+{adapter_sha}".encode()).hexdigest()
    return LoadedModel(
        model_id=card.name,
        tokenizer=base.tokenizer,
        model=merged,
        file_sha256=combined,
        max_context=base.max_context,
        source=str(folder.resolve()),
    )
