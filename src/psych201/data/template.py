"""``psych201 data new NAME``: a study folder to start one's own contribution from.

The folder holds what ``psych201 data validate`` asks for (the Psych-201 contribution layout): a
``README.md`` with the reference and the format, a ``generate_prompts.py`` that turns a trial
table into transcripts, and the ``prompts.jsonl.zip`` that script writes (one example
participant). The zip is produced by running the very script written, so the example and its
output cannot disagree.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
from pathlib import Path

from psych201.errors import UsageError

#: Folder names a study may take: letters, digits, ``_`` and ``-`` (upstream's folder names).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,79}")

_README = """# {name}

One line on the experiment: what participants did, how many took part.

* Reference: Author, A. (Year). Title. *Journal*. https://doi.org/...
* Original data: https://... (not uploaded here: only the transcripts are)

## Format

`prompts.jsonl.zip` holds `prompts.jsonl`: one JSON object per participant session, written by
`generate_prompts.py` from the original data.

| field | meaning |
|---|---|
| `text` | the whole session in words (instructions, stimuli, feedback); responses in `<<` `>>` |
| `experiment` | the experiment's name (free text) |
| `participant` | the participant's id (unique within `experiment`) |
| `RTs` | optional: one response time per response, in ms |
| `age`, `gender`, ... | optional: metadata of the participant |

State the options in the instructions (``Your options are J and F.``, ``press the J key``):
psych201 reads the option set of each response from the wording to compute the chance level.

## Check and score

```bash
psych201 data validate {name}          # the contribution rules (exit 1 on an error)
psych201 data stats {name}             # participants, responses, response lengths
psych201 plan --data {name} --model gemma-3-270m --split all
psych201 score --data {name} --split all --out runs/{name}
psych201 report runs/{name} --data {name} -o {name}.html
```
"""

_SCRIPT = '''"""Write prompts.jsonl.zip from the trial table below (replace it by your data).

Run it in this folder: ``python generate_prompts.py``. Only the Python standard library is used.
"""

import io
import json
import random
import zipfile
from pathlib import Path

EXPERIMENT = "{name}"
INSTRUCTIONS = (
    "In this task you repeatedly choose between two slot machines. "
    "Your options are {{a}} and {{b}}. Each choice wins or loses points.\\n\\n"
)
# One row per trial: participant, choice (0 = first machine, 1 = second), points, RT in ms.
TRIALS = [
    ("1", 0, 3, 812), ("1", 1, -1, 640), ("1", 0, 5, 702), ("1", 0, 2, 590),
    ("1", 1, 4, 655), ("1", 1, 1, 610), ("1", 0, -2, 733), ("1", 1, 3, 587),
]
PARTICIPANTS = {{"1": {{"age": 31, "gender": "female"}}}}


def session(participant, trials, rng):
    """One participant's transcript: the instructions, then one line per trial."""
    labels = rng.sample("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 2)  # letters randomised per participant
    text = INSTRUCTIONS.format(a=labels[0], b=labels[1])
    for number, (_, choice, points, _) in enumerate(trials, start=1):
        text += f"Trial {{number}}: you choose <<{{labels[choice]}}>> and get {{points}} points.\\n"
    record = {{"text": text, "experiment": EXPERIMENT, "participant": participant,
              "RTs": [rt for *_, rt in trials]}}
    record.update(PARTICIPANTS.get(participant, {{}}))
    return record


def main():
    rng = random.Random(0)
    lines = []
    for participant in dict.fromkeys(row[0] for row in TRIALS):
        trials = [row for row in TRIALS if row[0] == participant]
        lines.append(json.dumps(session(participant, trials, rng)))
    out = Path(__file__).resolve().parent / "prompts.jsonl.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("prompts.jsonl", "\\n".join(lines) + "\\n")
    out.write_bytes(buffer.getvalue())
    print(f"wrote {{out}}: {{len(lines)}} participants")


if __name__ == "__main__":
    main()
'''


def new_study(name: str, parent: Path = Path(".")) -> Path:
    """Write the study folder ``parent/name``; refuses a bad name or an existing path."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"study name {name!r}: use letters, digits, '_' and '-', starting with a letter "
            "(e.g. smith2024bandit)"
        )
    folder = Path(parent) / name
    if folder.exists():
        raise UsageError(f"{folder} already exists; choose another name or remove it")
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(_README.format(name=name), encoding="utf-8")
    script = folder / "generate_prompts.py"
    script.write_text(_SCRIPT.format(name=name), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):  # the script's own "wrote ..." line
        runpy.run_path(str(script), run_name="__main__")  # writes prompts.jsonl.zip beside it
    return folder
