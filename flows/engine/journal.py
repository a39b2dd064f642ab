"""What a run needs to go on, kept on the Prefect server beside the run, never in the process.

Flow-run inputs are the store: small JSON values keyed per run, written once.
- `stanch-step-<id>`: a step's final record (state, outputs, decisions); outputs hold no secret value.
- `stanch-gate-<id>-opened` / `-escalated` / `-closed`: a gate's window and its outcome, with the decisions and
  their signatures, so a resumed run re-opens a gate with its original deadline and never re-asks a decided one.
- `stanch-answer-...` / `stanch-verdict-...`: answers sent to the run and what it made of them; an answer that
  arrived while no process ran the flow has no verdict yet and is judged on resume.
- `stanch-playbook`: the playbook as the run started it, so a resume runs that version, wherever it came from.
- `stanch-open-gates`: the open gates, who may answer and until when (rewritten on every change; what
  `stanch approve` checks), and `stanch-heartbeat`: when the run's process last said it was alive.
- `stanch-launch`: the nonce of the launch proof this run took as its own (a copied proof verifies no other run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flows.engine.gates import ANSWER_PREFIX, OPEN_GATES_KEY, VERDICT_PREFIX, verdict_key
from flows.engine.records import StepRecord

STEP_PREFIX = "stanch-step-"
GATE_PREFIX = "stanch-gate-"
HEARTBEAT_KEY = "stanch-heartbeat"
PLAYBOOK_KEY = "stanch-playbook"  # the playbook as the run started it: a resume runs the same version
THREAD_KEY = "stanch-thread"  # the incident thread's root message {channel, ts}: a resume and later alerts reply there


def heartbeat_seconds() -> float:
    """How often a run says it is alive (STANCH_HEARTBEAT_SECONDS, default 10)."""
    return float(os.environ.get("STANCH_HEARTBEAT_SECONDS") or 10)


def stale_seconds() -> float:
    """A run silent this long is taken for dead: its process was killed or its machine lost (default 45)."""
    return float(os.environ.get("STANCH_STALE_SECONDS") or 45)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a Prefect client error (flow-run input calls raise these, not ObjectNotFound)."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def read_input(client: Any, flow_run_id: UUID, key: str) -> str | None:
    """A flow-run input's value, or None when there is none."""
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        return str(client.read_flow_run_input(flow_run_id, key))
    except ObjectNotFound:
        return None
    except PrefectHTTPStatusError as exc:
        if http_status(exc) == 404:
            return None
        raise


def read_replaced(client: Any, flow_run_id: UUID, key: str, tries: int = 8) -> str | None:
    """A value written with `Journal.replace` (delete, then create): a read may fall between the two, so a missing
    value is read again a few times before it counts as absent."""
    for attempt in range(tries):
        text = read_input(client, flow_run_id, key)
        if text is not None or attempt == tries - 1:
            return text
        time.sleep(0.1)
    return None


def read_json_input(flow_run_id: UUID, key: str) -> Any:
    """A flow-run input's JSON value, or None when there is none or the server cannot be read."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            text = read_input(client, flow_run_id, key)
        return json.loads(text) if text else None
    except Exception:
        return None


@dataclass
class Saved:
    """What a run had done before its process died."""

    steps: dict[str, StepRecord] = field(default_factory=dict)
    gates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # gate -> event -> data
    answered: set[str] = field(default_factory=set)  # answer keys that already have a verdict


class Journal:
    """The run's records on the Prefect server. Every write is best effort: a failed write is logged, and the
    run goes on (it only costs a re-done step or a re-asked gate if the process later dies)."""

    def __init__(self, flow_run_id: UUID, log: logging.Logger | logging.LoggerAdapter[Any]):
        self.flow_run_id = flow_run_id
        self.log = log

    def _client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def write(self, key: str, value: Any) -> None:
        from prefect.exceptions import ObjectAlreadyExists

        try:
            with self._client() as client:
                client.create_flow_run_input(self.flow_run_id, key=key, value=json.dumps(value, default=str))
        except ObjectAlreadyExists:
            return  # written before (a resumed run repeats a write): the first one stands
        except Exception as exc:
            if http_status(exc) == 409:
                return
            self.log.warning("could not record %s on the Prefect server: %s", key, exc)

    def replace(self, key: str, value: Any) -> None:
        """Write a value that changes (the open gates, the heartbeat)."""
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        try:
            with self._client() as client:
                with contextlib.suppress(ObjectNotFound, PrefectHTTPStatusError):
                    client.delete_flow_run_input(self.flow_run_id, key=key)
                client.create_flow_run_input(self.flow_run_id, key=key, value=json.dumps(value, default=str))
        except Exception as exc:
            self.log.debug("could not update %s: %s", key, exc)

    def _all(self, prefix: str, exclude: set[str] | None = None) -> list[Any]:
        out: list[Any] = []
        exclude = set(exclude or ())
        with self._client() as client:
            while True:
                page = client.filter_flow_run_input(self.flow_run_id, key_prefix=prefix, limit=200, exclude_keys=exclude)
                out.extend(page)
                if len(page) < 200:
                    return out
                exclude |= {item.key for item in page}

    # ---------------------------------------------------------------- steps and gates

    def step(self, record: StepRecord, masker: Any) -> None:
        """A finished step's record; its outputs hold no secret field, and are masked all the same (they are stored)."""
        self.write(f"{STEP_PREFIX}{record.id}", masker.mask_data(record.model_dump(mode="json")))

    def gate(self, gate: str, event: str, data: dict[str, Any]) -> None:
        self.write(f"{GATE_PREFIX}{gate}-{event}", data)

    def open_gates(self, gates: list[dict[str, Any]]) -> None:
        self.replace(OPEN_GATES_KEY, gates)

    def heartbeat(self) -> None:
        self.replace(HEARTBEAT_KEY, {"at": datetime.now(UTC).isoformat()})

    def load(self) -> Saved:
        saved = Saved()
        for item in self._all(STEP_PREFIX):
            record = StepRecord.model_validate_json(item.value)
            saved.steps[record.id] = record
        for item in self._all(GATE_PREFIX):
            gate, _, event = item.key.removeprefix(GATE_PREFIX).rpartition("-")
            saved.gates.setdefault(gate, {})[event] = json.loads(item.value)
        saved.answered = {item.key.removeprefix(VERDICT_PREFIX) for item in self._all(VERDICT_PREFIX)}
        return saved

    # ---------------------------------------------------------------- answers

    def new_answers(self, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
        """Answers not seen before, oldest first, as (key, JSON object); a value that is not JSON is skipped."""
        items = sorted(self._all(ANSWER_PREFIX, exclude=seen), key=lambda i: i.created or datetime.min.replace(tzinfo=UTC))
        out = []
        for item in items:
            try:
                value = json.loads(item.value)
            except ValueError:
                value = None
            out.append((item.key, value if isinstance(value, dict) else {}))
        return out

    def verdict(self, answer: str, verdict: dict[str, Any]) -> None:
        self.write(verdict_key(answer), verdict)


def last_heartbeat(flow_run_id: UUID) -> datetime | None:
    """When a run's process last said it was alive (None when it never did)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        text = read_replaced(client, flow_run_id, HEARTBEAT_KEY)  # a miss could mark a live run Crashed
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    try:
        return datetime.fromisoformat(str(value.get("at")))
    except (ValueError, AttributeError):
        return None
