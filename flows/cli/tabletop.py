"""Exercises and reports: `stanch tabletop`, `stanch report`, `stanch compare`, `stanch replay`.

Registered by flows.tabletop.cli (tabletop), flows.tabletop.report_cli (report, compare) and
flows.tabletop.replay_cli (replay).
"""

from __future__ import annotations

import flows.tabletop.cli
import flows.tabletop.replay_cli
import flows.tabletop.report_cli  # noqa: F401 - each registers its commands on the shared app
