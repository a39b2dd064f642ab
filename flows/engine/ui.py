"""Links into the Prefect UI."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from flows.config import Settings


def flow_run_url(flow_run_id: UUID | str, settings: Settings | None = None) -> str | None:
    base = settings.ui_url if settings and settings.ui_url else None
    if not base:
        from prefect.settings import PREFECT_UI_URL

        base = PREFECT_UI_URL.value()
    if not base:
        return None
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"
