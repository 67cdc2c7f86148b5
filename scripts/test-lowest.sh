#!/usr/bin/env bash
# The lowest supported versions, tested: a fresh virtual environment gets exactly the floors of
# pyproject.toml (the core dependencies and the [test] extra, which includes [cpu]), then the
# unit tests run in it.
#
#   scripts/test-lowest.sh             install the floors and run the unit tests
#   scripts/test-lowest.sh --dry-run   only resolve them (pip install --dry-run): no wheel is
#                                      installed, and pip reads their metadata, not the wheels
#
# PYTHON picks the interpreter (default python3; python3.10 is the lowest supported one),
# LOWEST_VENV the environment's folder (default .venv-lowest, replaced on each run).
# The project's constraints.txt pins the current torch, so it is not used here: torch's floor
# comes from your index. PyPI's Linux wheels of torch are CUDA builds (several GB with their
# NVIDIA libraries); set PIP_EXTRA_INDEX_URL to a CPU wheel index to get a CPU build instead.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
venv="${LOWEST_VENV:-.venv-lowest}"
rm -rf "$venv"
"$python" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip packaging 'tomli; python_version < "3.11"'

pins="$venv/lowest-constraints.txt"
python scripts/lowest_pins.py test >"$pins"
echo "lowest supported versions ($(python --version)):"
sed 's/^/  /' "$pins"

if [ "${1:-}" = "--dry-run" ]; then
    python -m pip install --dry-run --ignore-installed -c "$pins" -e ".[test]"
    exit 0
fi
python -m pip install -c "$pins" -e ".[test]"
python -m pip check
python -m pytest tests/unit -m "not integration and not gpu" -q
