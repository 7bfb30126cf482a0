"""Models from the Hugging Face hub: ``ORG/NAME`` ids resolved to a local snapshot (the HF
cache; ``HF_HUB_OFFLINE=1`` never downloads) and the revision a source names."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from filelock import FileLock

from psych201.data.hub import hub_cache_dir, offline, split_revision
from psych201.scoring.model_files import ModelLoadError

#: ``LoadedModel.source`` of a hub model: ``hf:ORG/NAME@<commit sha>``.
HUB_SOURCE_PREFIX = "hf:"
#: What scoring needs from a model repository; never pickled weights, never code.
_HUB_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.tiktoken",
    "tokenizer*",
]


def hub_revision(source: str) -> str | None:
    """The commit sha in a hub model's ``source`` (None for other models)."""
    if not source.startswith(HUB_SOURCE_PREFIX) or "@" not in source:
        return None
    return source.rsplit("@", 1)[1]


def _download_lock(cache: Path, repo: str, local_only: bool) -> AbstractContextManager[object]:
    """Two workers of one node asking for one model: the second waits here and then finds the
    snapshot complete, instead of both fetching its files side by side. Reading a cache offline
    takes no lock, so a read-only shared cache still works."""
    if local_only:
        return nullcontext()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return nullcontext()  # snapshot_download then says why it cannot write there
    return FileLock(cache / f".psych201-download-{repo.replace('/', '--')}.lock")


def hub_snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of ``ORG/NAME[@revision]``, downloading it when online.

    Offline (``HF_HUB_OFFLINE=1``) a missing snapshot is an error that says so.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    repo, revision = split_revision(repo_id)
    local_only = offline("HF_HUB_OFFLINE")
    # load_model silences transformers' bars, which silences the hub's too; a download of
    # gigabytes should show one (HF_HUB_DISABLE_PROGRESS_BARS=1 still wins).
    silenced = are_progress_bars_disabled()
    if silenced and not local_only:
        enable_progress_bars()
    cache = hub_cache_dir()
    try:
        with _download_lock(cache, repo, local_only):
            folder = snapshot_download(
                repo,
                revision=revision,
                cache_dir=cache,
                allow_patterns=_HUB_PATTERNS,
                local_files_only=local_only,
            )
    except LocalEntryNotFoundError:
        reason = "offline (HF_HUB_OFFLINE=1)" if local_only else "the hub is unreachable"
        raise ModelLoadError(
            f"model {repo}@{revision or 'main'} is not in the HF cache ({cache}) and "
            f"cannot be downloaded: {reason}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot fetch model {repo}: {exc}") from exc
    finally:
        if silenced and not local_only:
            disable_progress_bars()
    return Path(str(folder))
