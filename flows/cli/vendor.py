"""Vendor breaches: `stanch vendor inventory NAME [--discover]` (commands are registered by flows.vendors.cli)."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("flows.vendors.cli") is not None:
    importlib.import_module("flows.vendors.cli")
