"""Fleet workflows: optimize a model described by files, sweeps, the nightly re-benchmark.

Typed functions the CLI calls (it keeps argparse, printing and exit codes only); errors in
the user's files are :class:`speedster_dist.inputs.InputError`, damaged artifacts
:class:`speedster_dist.artifacts.ArtifactError`.
"""

from speedster_dist.fleet._documents import (
    FORMAT_VERSION,
    document,
    learner_json,
    path_text,
    trial_json,
    winner_json,
)
from speedster_dist.fleet._jobs import JOB_OPTIONS, JobSpec, optimization_time, run_job
from speedster_dist.fleet._loading import (
    check_sample_count,
    detect_inputs,
    detect_model,
    read_inputs,
    read_model,
    sample_count,
)
from speedster_dist.fleet._nightly import (
    LearnerRebench,
    NightlySettings,
    find_learners,
    rebench_all,
    rebench_learner,
    rebench_rows,
)
from speedster_dist.fleet._sweep import (
    SweepJobResult,
    SweepPlan,
    node_count,
    plan_from_mapping,
)
from speedster_dist.fleet._sweep_run import run_sweep

__all__ = [
    "FORMAT_VERSION",
    "JOB_OPTIONS",
    "JobSpec",
    "LearnerRebench",
    "NightlySettings",
    "SweepJobResult",
    "SweepPlan",
    "check_sample_count",
    "detect_inputs",
    "detect_model",
    "document",
    "find_learners",
    "learner_json",
    "node_count",
    "optimization_time",
    "path_text",
    "plan_from_mapping",
    "read_inputs",
    "read_model",
    "rebench_all",
    "rebench_learner",
    "rebench_rows",
    "run_job",
    "run_sweep",
    "sample_count",
    "trial_json",
    "winner_json",
]
