"""The RPU dashboard (server-rendered pages), mounted by rpu_dashboard_plugin.py. See docs/dashboard.md."""
