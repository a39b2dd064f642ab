"""Exercises and reports: `stanch tabletop`, `stanch report`, `stanch compare`, `stanch replay`.

Commands are registered by flows.tabletop.cli (tabletop), flows.tabletop.report_cli (report, compare) and
flows.tabletop.replay_cli (replay).
"""

from __future__ import annotations

import importlib.util

for _name in ("flows.tabletop.cli", "flows.tabletop.report_cli", "flows.tabletop.replay_cli"):
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)
