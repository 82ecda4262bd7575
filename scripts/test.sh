#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, lint and import layers included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the layers of docs/architecture.md (pyproject [tool.importlinter])
.venv/bin/python -m pytest -n 2 -q "$@"
