"""A whole study in one file: models × conditions × data, run cell by cell with resume.

``psych201 run STUDY.yaml`` reads a :class:`StudyFile` (:mod:`.schema`), expands it into
:class:`Cell` records (:mod:`.cells`, one run directory each), scores the cells that are not
finished and leaves the finished ones alone (:mod:`.resume`): a cell whose manifest says
*complete* for the same model, condition, data, split, limit and seed is not even opened, so
rerunning a finished study loads no model and scores nothing. A model is loaded once and shared
by all of its cells (:mod:`.run`). A condition a model cannot take (the chat-template control on
a model without a chat template) is skipped with a note, not a failure, and the skip is recorded
in the cell's directory so a rerun loads no model at all.
"""

from psych201.study.cells import (
    Cell,
    ModelGroup,
    adapter_folder,
    adapter_registries,
    by_model,
    data_path,
    expand,
    model_groups,
    score_config,
)
from psych201.study.resume import SKIP_FILE, is_complete, record_skip, skipped_before, table_rows
from psych201.study.run import (
    CELL_ERRORS,
    EMPTY_REASON,
    LOAD_ERRORS,
    CellOutcome,
    CellStatus,
    SetupLoader,
    StudyOutcome,
    StudyProgress,
    check_adapters_current,
    eta_seconds,
    run_study,
)
from psych201.study.schema import (
    ADAPTERS_DIR,
    DEMO_DATA,
    AdapterEntry,
    ConditionEntry,
    DataEntry,
    EngineSettings,
    ModelEngine,
    ModelEntry,
    StudyFile,
    StudyFileError,
    check_engines_installed,
    load_study,
)

__all__ = [
    "ADAPTERS_DIR",
    "CELL_ERRORS",
    "DEMO_DATA",
    "EMPTY_REASON",
    "LOAD_ERRORS",
    "SKIP_FILE",
    "AdapterEntry",
    "Cell",
    "CellOutcome",
    "CellStatus",
    "ConditionEntry",
    "DataEntry",
    "EngineSettings",
    "ModelEngine",
    "ModelEntry",
    "ModelGroup",
    "SetupLoader",
    "StudyFile",
    "StudyFileError",
    "StudyOutcome",
    "StudyProgress",
    "adapter_folder",
    "adapter_registries",
    "by_model",
    "check_adapters_current",
    "check_engines_installed",
    "data_path",
    "eta_seconds",
    "expand",
    "is_complete",
    "load_study",
    "model_groups",
    "record_skip",
    "run_study",
    "score_config",
    "skipped_before",
    "table_rows",
]
