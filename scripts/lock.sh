#!/usr/bin/env bash
# Regenerate constraints.txt (the lock) from requirements.txt: resolve in a throwaway venv,
# check it (pip check + the imports that fail only at runtime), and write the freeze.
source "$(dirname "$0")/lib.sh"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
python3.11 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install -q -U pip
PIP_CACHE_DIR="$CACHE/pip" "$TMP/venv/bin/pip" install -q --progress-bar off -r "$ROOT/requirements.txt"
"$TMP/venv/bin/pip" check
# pyarrow and great_expectations can be broken at runtime while pip check is clean (README, Dependencies)
"$TMP/venv/bin/python" -c "import pyarrow, great_expectations, pyspark.pandas, opendp, dp_accounting, airflow"
{ echo "# Lock of the Python environment: exact versions of every package (pip freeze of a verified install)."
  echo "# Install: pip install -r requirements.txt -c constraints.txt   Regenerate: scripts/lock.sh"
  "$TMP/venv/bin/pip" freeze --exclude-editable | grep -v '^-e'; } > "$ROOT/constraints.txt"
log "constraints.txt written ($(grep -vc '^#' "$ROOT/constraints.txt") packages)"
