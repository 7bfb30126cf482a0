"""Reading a YAML file into a pydantic model, with errors that name the file, line and key.

Study files (``psych201 run``) and post-training plans (``psych201 posttrain``) share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_yaml_model(
    path: str | Path,
    model: type[ModelT],
    error: type[Exception],
    *,
    kind: str,
    expected: str,
    invalid: str = "{reasons}",
) -> ModelT:
    """``model`` validated from the YAML mapping in ``path``; problems raise ``error``.

    ``kind`` names the file in messages ("study file", "plan"); ``expected`` says what the
    mapping must hold when the file is something else; ``invalid`` formats the schema problems
    (``{reasons}``: "key.path: message; ...").
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{p}: cannot read the {kind} ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise error(f"{p}{where}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise error(f"{p}: a {kind} is a mapping ({expected})")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise error(f"{p}: {invalid.format(reasons=reasons)}") from exc
