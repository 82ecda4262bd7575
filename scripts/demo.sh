#!/usr/bin/env bash
# The README's first run: install, then generate -> judge -> curate examples/problems.jsonl into
# the dataset folder my-prefs/ with the local default model (no API key, no server).
# Another local model: HFPREF_LOCAL_MODEL=PATH_OR_HUB_ID bash scripts/demo.sh
# A small model's judge answers may not parse (scores null): curate then has fewer rows to write.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/hfpref run examples/problems.jsonl -o "${DEMO_OUTPUT:-my-prefs}" -c examples/local.toml
echo "Dataset folder: ${DEMO_OUTPUT:-my-prefs}/  (datasets.load_dataset(\"${DEMO_OUTPUT:-my-prefs}\", \"dpo\"))"
