"""Starting alert runs: in the service's warm runner (lowest latency) or as deployment runs (any worker).

Either way the run is a flow run on the Prefect server, named after its incident, with the enriched alert facts
(sanitized) as its `alert` parameter and the trigger's inputs checked before anything starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flows.config import Settings
from flows.language.model import Playbook

_log = logging.getLogger("stanch.intake")
ROUTED_EVENT = "stanch.alert.routed"  # prefect.yaml's deployment triggers expect it
START_WAIT = 5.0  # seconds to wait for a warm run's flow run id before answering without it


class RunnerBusy(RuntimeError):
    """The warm runner is at its limit of concurrent runs; the sender should retry."""


class Launcher:
    """Starts alert runs by the configured route; `is_open` tells whether a run it started is still going."""

    def __init__(self, settings: Settings, signer: Callable[[str, str, str], str | None] | None = None):
        self.settings = settings
        self.route = settings.intake.route
        self.sandbox = settings.intake.sandbox
        self.signer = signer  # (playbook, incident, launcher) -> the service's launch proof
        self._flows: dict[str, Any] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._slots = threading.BoundedSemaphore(settings.intake.runner_threads)
        self._lock = threading.Lock()

    def warm(self, playbooks: list[Playbook]) -> None:
        """Import Prefect's engine and build each playbook's flow now, so the first alert pays for neither."""
        if self.route != "runner":
            return
        import flows.engine.driver  # noqa: F401 - the import is the warm-up
        from flows.engine.flow import playbook_flow

        for playbook in playbooks:
            self._flows[playbook.metadata.name] = playbook_flow(playbook)

    def start(
        self,
        playbook: Playbook,
        inputs: dict[str, Any],
        facts: dict[str, Any],
        incident_id: str,
        on_end: Callable[[str | None], None] | None = None,
    ) -> str | None:
        """Start a run; its flow run id (None when a warm run has not announced it within START_WAIT).
        LaunchError when the inputs are not acceptable; RunnerBusy; other exceptions when Prefect fails."""
        from flows.engine.launch import checked_inputs

        values = checked_inputs(playbook, inputs)
        launched_by = f"alert:{facts.get('source')}"
        proof = self.signer(playbook.metadata.name, incident_id, launched_by) if self.signer else None
        parameters: dict[str, Any] = {
            "inputs": values,
            "alert": facts,
            "mode": "live",
            "incident_id": incident_id,
            "trigger": "alert",
            "launched_by": launched_by,
            "sandbox": self.sandbox,
            "launch_proof": proof,
        }
        if self.route == "event":
            self._emit(playbook, parameters)
            return None
        if self.route == "deployment":
            from prefect.deployments import run_deployment

            flow_run: Any = run_deployment(f"{playbook.metadata.name}/default", parameters=parameters, timeout=0)
            return str(flow_run.id)
        return self._run_here(playbook, parameters, on_end)

    def _emit(self, playbook: Playbook, parameters: dict[str, Any]) -> None:  # the run id is not known here
        """The event route: a `stanch.alert.routed` event on the Prefect server; the playbook's deployment trigger
        (prefect.yaml) turns its payload into the run's parameters. The run id is not known here: None."""
        from prefect.events import emit_event

        name = playbook.metadata.name
        event = emit_event(
            event=ROUTED_EVENT,
            resource={
                "prefect.resource.id": f"stanch.playbook.{name}",
                "prefect.resource.name": name,
                "stanch.incident": str(parameters["incident_id"]),
            },
            payload=parameters,
        )
        if event is None:
            raise RuntimeError("Prefect's event client is not available: no event was emitted")
        _log.info("alert for %s handed to the deployment trigger (event %s)", name, event.id)

    def _run_here(
        self, playbook: Playbook, parameters: dict[str, Any], on_end: Callable[[str | None], None] | None
    ) -> str | None:
        from flows.engine.flow import playbook_flow
        from flows.engine.observe import observing
        from integrations.context import RunMode

        if not self._slots.acquire(blocking=False):
            raise RunnerBusy(f"the warm runner already runs {self.settings.intake.runner_threads} alert runs")
        flow = self._flows.get(playbook.metadata.name) or playbook_flow(playbook)
        started = threading.Event()
        box: dict[str, str] = {}

        def observe(kind: str, data: dict[str, Any]) -> None:
            if kind == "run_started":
                box["run_id"] = str(data["run_id"])
                with self._lock:
                    self._threads[box["run_id"]] = threading.current_thread()
                started.set()

        def target() -> None:
            try:
                with observing(observe):
                    state = flow(**{**parameters, "mode": RunMode(parameters["mode"])}, return_state=True)
                _log.info("alert run %s of %s ended %s", box.get("run_id"), playbook.metadata.name, state.name)
            except BaseException as exc:  # a run's failure is the run's; the service goes on
                _log.error("alert run of %s failed to run: %s", playbook.metadata.name, type(exc).__name__)
            finally:
                self._slots.release()
                started.set()
                with self._lock:
                    self._threads.pop(box.get("run_id", ""), None)
                if on_end is not None:
                    on_end(box.get("run_id"))

        threading.Thread(target=target, name=f"stanch-run-{playbook.metadata.name}", daemon=True).start()
        started.wait(START_WAIT)
        return box.get("run_id")

    def is_open(self, run_id: str) -> bool:
        """True while the run goes on (Running, Paused, Scheduled...); a run Prefect cannot tell about counts as open."""
        with self._lock:
            if run_id in self._threads:
                return True
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(run_id)).state
        except (ValueError, ObjectNotFound):
            return False
        except Exception as exc:  # Prefect unreachable: better attach than start a second containment
            _log.warning("could not read run %s (taken as open): %s", run_id, type(exc).__name__)
            return True
        return state is not None and not state.is_final()
