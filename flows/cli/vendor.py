"""Vendor breaches: `stanch vendor inventory NAME [--discover]` (registered by flows.vendors.cli)."""

from __future__ import annotations

import flows.vendors.cli  # noqa: F401 - registers the `vendor` commands on the shared app
