"""The post-training lab: LoRA post-training of a base model, and the worked experiment.

Recipes (:data:`RECIPES`): ``instruct`` (supervised tuning on generated assistant dialogues),
``preference`` (DPO toward normatively correct answers, the frozen base as reference) and
``human`` (Centaur's method: loss on the tokens inside ``<<…>>`` of training participants only).
Each run writes an adapter folder with a card that regenerates it, and a registry entry that
pairs it with its base, so it is scored and compared like any other checkpoint.

The lab sits on top of the pipeline (like :mod:`psych201.pipeline`): it reads data, renders and
aligns prompts with the scoring layer's rules, and hands adapters to the regular scoring run.
"""

from psych201.lab.adapter import (
    MAX_REPO_ADAPTER_BYTES,
    AdapterCard,
    default_adapter_root,
    is_adapter_dir,
    load_adapter_model,
    read_card,
    save_adapter,
)
from psych201.lab.assistant import assistant_dialogues, instruct_examples
from psych201.lab.examples import (
    PreferencePair,
    TrainingData,
    TrainingExample,
    example_from_spans,
    human_examples,
)
from psych201.lab.experiment import ExperimentPlan, read_plan, run_experiment
from psych201.lab.normative import normative_lottery_choice, normative_responses
from psych201.lab.posttrain import DataSpec, PosttrainResult, build_data, posttrain
from psych201.lab.preference import preference_data
from psych201.lab.registry_entry import registry_entries, write_registry_fragment
from psych201.lab.settings import RECIPES, LabError, LoRASettings, Recipe, TrainSettings
from psych201.lab.train import StepLog, TrainResult, lora_model, mean_nll, train

__all__ = [
    "MAX_REPO_ADAPTER_BYTES",
    "RECIPES",
    "AdapterCard",
    "DataSpec",
    "ExperimentPlan",
    "LabError",
    "LoRASettings",
    "PosttrainResult",
    "PreferencePair",
    "Recipe",
    "StepLog",
    "TrainResult",
    "TrainSettings",
    "TrainingData",
    "TrainingExample",
    "assistant_dialogues",
    "build_data",
    "default_adapter_root",
    "example_from_spans",
    "human_examples",
    "instruct_examples",
    "is_adapter_dir",
    "load_adapter_model",
    "lora_model",
    "mean_nll",
    "normative_lottery_choice",
    "normative_responses",
    "posttrain",
    "preference_data",
    "read_card",
    "read_plan",
    "registry_entries",
    "run_experiment",
    "save_adapter",
    "train",
    "write_registry_fragment",
]
