#!/usr/bin/env bash
# One-shot initialisation of the stack (docker compose up airflow-init), run through the image's entrypoint (so
# the secrets are checked first) as the Airflow user. Every step must succeed: the first failure stops the
# init with its message and compose does not start the other services.
#   Airflow's metadata database, the admin account, every region's database (config/regions/*.yaml) and the
#   national one (config/national.yaml, when present), the RPU roles.
set -euo pipefail
regions_dir="${RPU_REGIONS_DIR:-/opt/airflow/project/config/regions}"

echo "init: migrating Airflow's metadata database"
airflow db migrate

admin="${AIRFLOW_ADMIN_USER:?set AIRFLOW_ADMIN_USER}"
if airflow users list --output plain 2>/dev/null | awk 'NR > 1 {print $2}' | grep -qxF -- "$admin"; then
  echo "init: the admin account ${admin} exists"
else
  echo "init: creating the admin account ${admin}"
  # the password is read from the environment by a Python one-liner, never on a command line (ps, logs)
  python - <<'PY'
import os
import subprocess
import sys

pw = os.environ["AIRFLOW_ADMIN_PASSWORD"]
cmd = ["airflow", "users", "create", "--role", "Admin", "--username", os.environ["AIRFLOW_ADMIN_USER"],
       "--firstname", "Admin", "--lastname", "RPU", "--email", os.environ.get("AIRFLOW_ADMIN_EMAIL", "admin@example.invalid"),
       "--use-random-password"]
subprocess.run(cmd, check=True)
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder  # noqa: E402

with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    user = sm.find_user(username=os.environ["AIRFLOW_ADMIN_USER"])
    if user is None:
        sys.exit("init: the admin account was not created")
    sm.reset_password(user.id, pw)
PY
fi

shopt -s nullglob
regions=("$regions_dir"/*.yaml)
if [ ${#regions[@]} -eq 0 ]; then
  echo "init: no region file in ${regions_dir} (add one with rpu region add)"
fi
for file in "${regions[@]}"; do
  code="$(basename "$file" .yaml)"
  echo "init: migrating the database of region ${code}"
  rpu db migrate --region "$code"
done
if [ -f "${regions_dir}/../national.yaml" ]; then
  echo "init: migrating the national database"
  rpu db migrate --national
fi

echo "init: RPU pools and roles"
rpu pools sync
rpu roles sync
echo "init: done"
