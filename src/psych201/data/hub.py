"""``hf:`` data sources: a Hugging Face dataset by hub id, or a local dataset folder.

``hf:OWNER/NAME[@revision]`` (for instance ``hf:marcelbinz/Psych-201-test``) resolves through
``huggingface_hub`` to the dataset's snapshot in the standard HF cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``), downloading its Parquet shards and card when online. With ``HF_HUB_OFFLINE=1``
or ``HF_DATASETS_OFFLINE=1`` nothing is fetched: the cached snapshot is used, or the command fails
naming the repository. ``hf:PATH`` names a local folder instead: a hub-style folder of Parquet
shards with a README card, or the output of ``datasets``' ``save_to_disk``.

Either way the result is a local folder that :func:`psych201.data.readers.discover_studies` splits
into studies by the ``study`` column and reads row group by row group, so memory stays bounded
whatever the dataset's size (the published test set is one table of all studies).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from psych201.data.issues import DataError

PREFIX = "hf:"

#: ``OWNER/NAME`` with an optional ``@revision`` (branch, tag or commit sha).
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: What a dataset snapshot needs: the data and the card (no scripts: nothing is ever executed).
_DATA_PATTERNS = ["*.parquet", "**/*.parquet", "README.md", "*.json", "**/*.json", "**/*.arrow"]
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HubData:
    """A resolved ``hf:`` source: the local folder to read and where it came from.

    ``repo``/``revision``/``commit`` are None for a local folder; ``commit`` is the snapshot's
    commit sha for a hub dataset.
    """

    spec: str
    folder: Path
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None


def is_hub_spec(data: str | Path) -> bool:
    """Whether ``data`` is an ``hf:`` source (``Path("hf:a/b")`` keeps its text)."""
    return str(data).startswith(PREFIX)


def offline(*variables: str) -> bool:
    """Whether any of these environment variables asks for offline mode (read at call time)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in variables)


def hub_cache_dir() -> Path:
    """The standard HF hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def split_revision(body: str) -> tuple[str, str | None]:
    """``OWNER/NAME@rev`` → (``OWNER/NAME``, ``rev``); no ``@`` → (body, None)."""
    repo, sep, revision = body.partition("@")
    return repo, (revision or None) if sep else None


def is_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(split_revision(text)[0]))


def resolve_hub_data(data: str | Path) -> HubData:
    """The local folder of an ``hf:`` source (downloading into the HF cache when online)."""
    spec = str(data)
    body = spec[len(PREFIX) :] if is_hub_spec(spec) else spec
    local = Path(body).expanduser()
    if local.exists():
        if not local.is_dir():
            raise DataError(
                "hf: names a dataset folder (Parquet shards + README, or save_to_disk output); "
                "pass a single file without hf:",
                file=str(local),
                code="unsupported",
            )
        return HubData(spec=spec, folder=local)
    repo, revision = split_revision(body)
    if not _REPO_ID.match(repo):
        raise DataError(
            f"{spec!r} is neither a local folder nor a hub id OWNER/NAME[@revision]",
            file=spec,
            code="not-found",
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    local_only = offline("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    try:
        folder = snapshot_download(
            repo,
            repo_type="dataset",
            revision=revision,
            cache_dir=hub_cache_dir(),
            allow_patterns=_DATA_PATTERNS,
            local_files_only=local_only,
        )
    except LocalEntryNotFoundError:
        where = "offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if local_only else "unreachable hub"
        raise DataError(
            f"dataset {repo}@{revision or 'main'} is not in the HF cache ({hub_cache_dir()}) and "
            f"cannot be downloaded: {where}",
            file=spec,
            code="not-found",
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise DataError(f"cannot fetch dataset {repo}: {error}", file=spec, code="read") from None
    path = Path(folder)
    return HubData(spec=spec, folder=path, repo=repo, revision=revision, commit=path.name)


def resolve_data(data: str | Path) -> Path:
    """``data`` itself, or the local folder of an ``hf:`` source."""
    return resolve_hub_data(data).folder if is_hub_spec(data) else Path(data)
