#!/usr/bin/env bash
# The concentrator image's entrypoint (every Airflow container): secrets from NAME_FILE exported as NAME, then
# the start-up check of the secrets (python -m rpu.secrets_check: refuses placeholders and short values), then
# the official Airflow entrypoint. NAME_CMD is left to Airflow, which runs it itself for its sensitive settings.
set -euo pipefail

for name in $(python -m rpu.secrets_check --names); do
  file_var="${name}_FILE"
  if [ -z "${!name:-}" ] && [ -n "${!file_var:-}" ]; then
    if [ ! -r "${!file_var}" ]; then
      echo "entrypoint: ${file_var} names a file that cannot be read" >&2
      exit 1
    fi
    value="$(cat -- "${!file_var}")"
    export "${name}=${value}"
    unset value
  fi
done

init=()
if [ "${RPU_INIT:-}" = "true" ]; then init=(--init); fi
python -m rpu.secrets_check "${init[@]}"

# AIRFLOW_ENTRYPOINT: the official entrypoint (tests point it at a stand-in)
exec "${AIRFLOW_ENTRYPOINT:-/entrypoint}" "$@"
