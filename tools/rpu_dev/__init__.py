"""Developer tools, not shipped: the local demo (`python -m rpu_dev.demo`) and the real local services
(PostgreSQL, SFTP, SMTP) the demo, the tests and the benchmarks start. Not in the `rpu-concentrator` wheel nor
in the Docker image; `scripts/setup` installs it (editable) into `.venv` from `tools/pyproject.toml`."""
