"""Stanch: the playbook language, its compiler into Prefect flows, gates and the CLI."""
