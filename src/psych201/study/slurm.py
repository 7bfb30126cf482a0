"""``psych201 run STUDY --emit slurm``: a Slurm job array over ``--cells i/N`` and a report job.

The script submits itself in two steps: an array of N tasks, task ``i`` running
``psych201 run STUDY --cells i/N --no-report`` (its share of the model groups, balanced by
planned hours), then one job that waits for the whole array (``afterany``: a failed task leaves
the others' cells complete) and writes the report from whatever cells are complete.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from psych201.study.cells import ModelGroup


@dataclass(frozen=True)
class SlurmOptions:
    """What the array asks of Slurm; ``gpus`` per task (the most any of its models needs)."""

    tasks: int
    gpus: int
    time: str = "24:00:00"
    cpus_per_task: int = 8
    partition: str | None = None


def slurm_script(study_file: Path, shares: Sequence[Sequence[ModelGroup]], options: SlurmOptions,
                 *, extra_args: Sequence[str] = ()) -> str:
    """The submission script (bash) for ``study_file`` shared as ``shares`` (one per task)."""
    study = shlex.quote(str(study_file))
    extra = "".join(" " + shlex.quote(a) for a in extra_args)
    partition = f"#SBATCH --partition={options.partition}\n" if options.partition else ""
    plan = "".join(
        f"#   task {i}: {sum(len(g.cells) for g in share)} cells: "
        f"{', '.join(g.model for g in share) or '(none)'}\n"
        for i, share in enumerate(shares, 1)
    )
    n = options.tasks
    return f"""#!/usr/bin/env bash
# psych201 study {study_file} as a Slurm job array of {n} tasks (submit: bash THIS_FILE).
# Each task runs its share of the model groups, balanced by planned hours (psych201 run --cells):
{plan}set -euo pipefail
array_job=$(sbatch --parsable <<'ARRAY'
#!/usr/bin/env bash
#SBATCH --job-name=psych201-cells
#SBATCH --array=1-{n}
#SBATCH --gres=gpu:{options.gpus}
#SBATCH --cpus-per-task={options.cpus_per_task}
#SBATCH --time={options.time}
{partition}#SBATCH --output=psych201-cells-%A_%a.log
set -euo pipefail
psych201 run {study} --cells "${{SLURM_ARRAY_TASK_ID}}/{n}" --no-report --quiet{extra}
ARRAY
)
sbatch --dependency=afterany:"$array_job" <<'REPORT'
#!/usr/bin/env bash
#SBATCH --job-name=psych201-report
#SBATCH --cpus-per-task={options.cpus_per_task}
#SBATCH --time=02:00:00
{partition}#SBATCH --output=psych201-report-%j.log
set -euo pipefail
psych201 run {study} --report{extra}
REPORT
echo "submitted array job $array_job ({n} tasks) and its report job"
"""
