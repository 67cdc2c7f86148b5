"""The scheduling examples in cluster/ stay valid: parseable, and calling the CLI correctly."""

import re
import shlex
from pathlib import Path

import yaml

from speedster_dist.cli import build_parser

CLUSTER = Path(__file__).resolve().parents[3] / "cluster"


def _cli_args(command):
    """The speedster-dist arguments of a shell command line (dates filled in)."""
    command = re.sub(r"\$\(date [^)]*\)", "2024-03-01", command.replace("\\%", "%"))
    words = shlex.split(command)
    start = words.index("speedster-dist") + 1
    end = words.index(">>") if ">>" in words else len(words)
    return build_parser().parse_args(words[start:end])


def test_the_cronjob_submits_a_rayjob_that_runs_rebench():
    docs = list(yaml.safe_load_all((CLUSTER / "nightly-cronjob.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"}
    cron = kinds["CronJob"]["spec"]
    assert len(cron["schedule"].split()) == 5 and cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
    script = pod["containers"][0]["args"][0]
    assert "kubectl create -f -" in script and "exit 1" in script
    rule = kinds["Role"]["rules"][0]
    assert rule["apiGroups"] == ["ray.io"] and "create" in rule["verbs"]
    rayjob = yaml.safe_load(kinds["ConfigMap"]["data"]["rayjob.yaml"])
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert "ray.io/cluster" in rayjob["spec"]["clusterSelector"]
    args = _cli_args(rayjob["spec"]["entrypoint"])
    assert args.command == "rebench" and str(args.history) == "/data/history"
    assert str(args.report).endswith(".html") and str(args.learners) == "/data/learners"


def test_the_cron_line_submits_rebench_as_a_ray_job():
    lines = [
        line
        for line in (CLUSTER / "nightly.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1
    fields = lines[0].split(maxsplit=5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert "ray job submit" in fields[5] and " -- speedster-dist rebench " in fields[5]
    args = _cli_args(fields[5])
    assert args.command == "rebench" and args.json and args.report
    text = (CLUSTER / "nightly.cron").read_text()
    assert "RAY_ADDRESS=http://127.0.0.1:8265" in text
    assert "\nRAY_AUTH_MODE=token\n" in text  # the cluster authenticates its clients
