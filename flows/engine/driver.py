"""The driver: one playbook's steps inside its flow run; tasks, dependencies, gates, the summary.

The driver runs in the flow's thread. A step is submitted as soon as every step it needs has finished,
so steps with no path between them run concurrently on the task runner; `for_each` steps are mapped
over their items with at most `max_concurrency` in flight. Gates open when no task is in flight (a
paused flow run must not have tasks starting under it). Every item of every step, fanned out or not,
runs through `attempt_item`: the step's `timeout` bounds each attempt and `retries` counts per item.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as wait_futures
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from flows.config import Settings, approval_public_keys, is_local_sandbox
from flows.engine import clock
from flows.engine import gates as gate_rules
from flows.engine.gates import Gate, GateAnswer, GateOutcome, Verification
from flows.engine.journal import PLAYBOOK_KEY, Journal, heartbeat_seconds
from flows.engine.notify import IncidentThread
from flows.engine.observe import emit
from flows.engine.records import DecisionRecord, RunSummary, StepRecord
from flows.language import expressions
from flows.language.model import Approval, Playbook, Step, duration_seconds
from integrations.aws import error_code
from integrations.context import ActionContext, AwsClients, HttpClient, RunInfo
from integrations.masking import SecretMasker, install_log_masking
from integrations.registry import ActionSpec, get_action

_PAST = {"approve": "approved", "reject": "rejected", "timeout": "timed out"}
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess")
_BLOCKING_STATES = ("failed", "blocked", "rejected", "timed_out", "not_run")


class StepError(Exception):
    """A step's failure, its message already masked of secrets."""


def build_context(settings: Settings, run: RunInfo, masker: SecretMasker, logger: Any) -> ActionContext:
    """The run's action context; a dry-run's clients refuse every call that would change something."""
    aws = AwsClients.from_settings(settings.aws, run.id, read_only=run.dry_run)

    @functools.cache
    def slack_factory() -> Any:
        from flows.engine.notify import slack_client

        client = slack_client(settings, masker, aws.client, read_only=run.dry_run)
        if client is None:
            ref = settings.slack.token
            raise RuntimeError(f"no Slack token: set {ref.describe() if ref else 'slack.token in the configuration'}")
        return client

    return ActionContext(
        aws=aws,
        slack_factory=slack_factory,
        run=run,
        masker=masker,
        logger=logger,
        slack_default_channel=settings.slack.default_channel,
        http=HttpClient(read_only=run.dry_run),
    )


# A fan-out larger than this runs several items per Prefect task (about 8 tasks per concurrent slot), so
# that Prefect's per-task cost (~10 ms of CPU) stays small beside the work; each item keeps its own
# outcome, retries and error, and the concurrency is unchanged.
CHUNK_ABOVE = 64


def _call_action(step: Step, spec: ActionSpec, ctx: ActionContext, args: dict[str, Any], logger: Any) -> dict[str, Any]:
    step_ctx = dataclasses.replace(ctx, logger=logger)
    try:
        validated = spec.args_model.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise StepError(ctx.masker.mask(f"arguments of {spec.key} after evaluation: {problems}")) from None
    kwargs = {name: getattr(validated, name) for name in spec.args_model.model_fields}
    try:
        result = spec.func(step_ctx, **kwargs)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if error_code(exc) in _DENIED:
            message += (
                " (the responder lacks this permission: give its role the policy `stanch plan PLAYBOOK --iam-policy` prints)"
            )
        raise StepError(ctx.masker.mask(message)) from None
    return spec.outputs(result)


def _bounded(seconds: int | None, call: Any, *args: Any) -> Any:
    """call(*args), waiting at most `seconds`. A call still running then is abandoned on its daemon thread
    (Python cannot stop it) and the attempt fails; the actions' idempotency makes a late finish harmless."""
    if seconds is None:
        return call(*args)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call(*args)
        except BaseException as exc:  # handed back to the waiting thread
            box["error"] = exc

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(target,), daemon=True, name="stanch-attempt")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StepError(f"timed out after {seconds}s (the step's timeout)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def attempt_item(step: Step, spec: ActionSpec, ctx: ActionContext, args: dict[str, Any], logger: Any) -> dict[str, Any]:
    """One item of a step (or the step's only run): 1 + `retries` attempts, each bounded by `timeout`."""
    timeout = duration_seconds(step.timeout) if step.timeout is not None else None
    for attempt in range(step.retries + 1):
        try:
            result: dict[str, Any] = _bounded(timeout, _call_action, step, spec, ctx, args, logger)
            return result
        except StepError as exc:
            if attempt == step.retries:
                raise
            delay = duration_seconds(step.retry_delay)
            logger.warning("Attempt %d of %d failed: %s; again in %ds", attempt + 1, step.retries + 1, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _make_task(step: Step, spec: ActionSpec, ctx: ActionContext) -> Any:
    """The step's Prefect task: it runs a list of (index, arguments) and returns (index, outputs) for each.

    A single step is one item (index -1), a fan-out one item per task, or, above CHUNK_ABOVE items, a chunk
    of items per task; each item keeps its own outcome. A failed item's outputs are {"failed", "error"}.
    """
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.logging import get_run_logger

    def run_items(items: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
        logger = get_run_logger()
        done: list[tuple[int, dict[str, Any]]] = []
        for index, args in items:
            try:
                done.append((index, attempt_item(step, spec, ctx, args, logger)))
            except StepError as exc:
                if index >= 0:
                    logger.error("Item %d failed: %s", index, exc)
                done.append((index, {"failed": True, "error": str(exc)}))
        return done

    return task(  # type: ignore[call-overload]
        run_items, name=step.id, persist_result=False, cache_policy=NO_CACHE, log_prints=False, description=spec.description
    )


@dataclasses.dataclass
class _Unit:
    step_id: str
    indices: list[int]  # [-1]: the step's only run; else the items this task runs


class Driver:
    """Schedules one playbook's steps inside the current flow run."""

    def __init__(
        self,
        playbook: Playbook,
        inputs: dict[str, Any],
        alert: dict[str, Any] | None,
        run: RunInfo,
        flow_run_id: UUID,
        settings: Settings,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ):
        self.playbook = playbook
        self.run = run
        self.flow_run_id = flow_run_id
        self.log = logger
        self.masker = SecretMasker()
        install_log_masking(self.masker)
        self.ctx = build_context(settings, run, self.masker, logger)
        self.records = {s.id: StepRecord(id=s.id, name=s.display_name, phase=s.phase, uses=s.uses) for s in playbook.steps}
        self.outputs: dict[str, Any] = {}
        self.context = {"inputs": inputs, "alert": alert or {}, "steps": {}, "run": run.as_context()}
        self.specs = {s.id: get_action(s.uses) for s in playbook.steps}
        self.settings = settings
        self.abort_reason: str | None = None
        self.tasks = {s.id: _make_task(s, self.specs[s.id], self._step_context(s)) for s in playbook.steps}
        self.approved: set[str] = set()
        self.journal = Journal(flow_run_id, logger)
        self.gates: dict[str, Gate] = {}
        self.saved_gates: dict[str, dict[str, dict[str, Any]]] = {}
        self.seen_answers: set[str] = set()
        self.last_poll = 0.0
        self.resumed = False
        self.thread: IncidentThread | None = None
        self.verification = Verification(
            keys=approval_public_keys(settings),
            allow_unsigned=settings.approvals.allow_unsigned and is_local_sandbox(settings),
        )
        self.running: dict[Any, _Unit] = {}
        self.queued: dict[str, deque[list[tuple[int, Any]]]] = {}
        self.item_results: dict[str, dict[int, Any]] = {}
        self.cancel_reasons: list[str] = []
        self.notes: list[str] = []

    def _step_context(self, step: Step) -> ActionContext:
        """The run's context, with the step's own AWS account and region when it names them.

        An account missing from the configuration stops the run before any step (nothing half-done).
        """
        if step.aws is None:
            return self.ctx
        try:
            aws = AwsClients.from_settings(
                self.settings.aws, self.run.id, step.aws.account, step.aws.region, read_only=self.run.dry_run
            )
        except KeyError as exc:
            self.abort_reason = self.abort_reason or f"step {step.id}: {exc.args[0]}"
            return self.ctx
        return dataclasses.replace(self.ctx, aws=aws)

    # ---------------------------------------------------------------- scheduling

    def execute(self) -> RunSummary:
        if any(s.approval for s in self.playbook.steps) and not self.run.dry_run:
            if self.verification.allow_unsigned:
                self.log.warning(
                    "UNSIGNED APPROVALS ACCEPTED: approvals.allow_unsigned is on (sandbox only). Anyone who can "
                    "reach the Prefect API can answer this run's gates."
                )
            elif not self.verification.keys and self.abort_reason is None:
                self.abort_reason = (
                    "this playbook has approval gates but no approval public key is configured: set "
                    "approvals.public_key (default: the STANCH_APPROVAL_PUBLIC_KEY environment variable) to the "
                    "approval service's public key (`stanch keys init` makes a pair)"
                )
        self._restore()
        self.journal.write(PLAYBOOK_KEY, self.playbook.model_dump(mode="json", by_alias=True, exclude_defaults=True))
        stop = threading.Event()
        beat = threading.Thread(target=contextvars.copy_context().run, args=(self._heartbeat, stop), daemon=True)
        beat.start()
        try:
            self._loop()
        finally:
            stop.set()
            self.journal.open_gates([])
        return self._summary()

    def _loop(self) -> None:
        while True:
            approved = len(self.approved)
            for step in self._schedule():
                if step.id not in self.gates:
                    self._open_gate(step)
            if len(self.approved) > approved:
                continue  # a dry-run passed its gates at once: their steps start now
            if self.abort_reason is not None:
                for gate in list(self.gates.values()):
                    self._drop_gate(gate, f"the run stopped: {self.abort_reason}")
            if self.gates and clock.monotonic() - self.last_poll >= gate_rules.POLL_SECONDS:
                self.last_poll = clock.monotonic()  # at most once a poll interval, however fast tasks finish
                if self._poll_gates():
                    continue  # a gate closed: its step (or what needs it) may start now
            if self.running:
                self._wait_one(timeout=gate_rules.POLL_SECONDS if self.gates else None)
                continue
            if self.gates:
                clock.sleep(gate_rules.POLL_SECONDS)  # idle: a virtual clock may jump here
                continue
            if all(r.state != "pending" for r in self.records.values()):
                return
            # nothing runs and nothing can start: only steps whose needs never finished remain
            for record in self.records.values():
                if record.state == "pending":
                    self._finish(record, "not_run", reason="its needs never finished")

    def _heartbeat(self, stop: threading.Event) -> None:
        """Tell the Prefect server this process is alive, so a run whose process died can be told apart."""
        while True:
            self.journal.heartbeat()
            if stop.wait(heartbeat_seconds()):
                return

    def _restore(self) -> None:
        """Take up what the run had done before its process died: finished steps, decided gates, open gates."""
        saved = self.journal.load()
        if not saved.steps and not saved.gates:
            return
        self.resumed = True
        self.seen_answers |= saved.answered
        for step_id, record in saved.steps.items():
            if step_id not in self.records or record.state == "pending":
                continue
            self.records[step_id] = record
            if record.outputs is not None:
                self.outputs[step_id] = record.outputs
            for decision in record.decisions:
                self._note_nonce(decision.signature)
            # what a finished step meant for the run then, it means again now
            step = self.playbook.step(step_id)
            if record.state == "failed" and step.on_failure == "abort" and self.abort_reason is None:
                self.abort_reason = f"step {step_id} failed: {record.reason}"
            elif record.state in ("rejected", "timed_out") and "on_timeout: continue" not in record.reason:
                self.cancel_reasons.append(f"gate before {step_id} {record.reason.removeprefix('gate ')}")
        for gate_id, events in saved.gates.items():
            closed = events.get("closed")
            if closed is None:
                self.saved_gates[gate_id] = events
                continue
            for decision in closed.get("decisions", []):
                self._note_nonce(decision.get("signature"))
            if gate_id in self.records and closed.get("status") == "approved" and self.records[gate_id].state == "pending":
                self.approved.add(gate_id)
                self.records[gate_id].decisions = [DecisionRecord.model_validate(d) for d in closed.get("decisions", [])]
        done = sorted(s for s, r in saved.steps.items() if r.state != "pending")
        self.log.warning(
            "Resumed: %d step(s) finished before are not run again (%s); %d gate(s) decided before are not asked again",
            len(done),
            ", ".join(done) or "none",
            sum(1 for e in saved.gates.values() if "closed" in e),
        )
        emit("run_resumed", steps=done)

    def _note_nonce(self, signature: str | None) -> None:
        from flows.approvals.signing import nonce_of

        if nonce_of(signature):
            self.verification.seen.add(nonce_of(signature))

    def _schedule(self) -> list[Step]:
        gated: list[Step] = []
        for step in self.playbook.steps:
            record = self.records[step.id]
            if record.state != "pending" or step.id in self.queued:
                continue
            needs = [self.records[n] for n in step.needs]
            if any(n.state == "pending" for n in needs):
                continue
            if self.abort_reason is not None:
                self._finish(record, "not_run", reason=self.abort_reason)
                continue
            blocked = [n for n in needs if n.state in _BLOCKING_STATES]
            if blocked and not step.always:
                first = blocked[0]
                self._finish(record, "blocked", reason=f"needs {first.id}, which is {first.state}")
                continue
            if step.when is not None and step.id not in self.approved:
                try:
                    go = expressions.truthy(expressions.evaluate_string(step.when, self._context()))
                except expressions.ExpressionError as exc:
                    self._fail(step, record, f"when: {exc}")
                    continue
                if not go:
                    self._finish(record, "skipped", reason="its `when` condition is false")
                    continue
            if step.approval is not None and step.id not in self.approved:
                gated.append(step)
                continue
            self._submit(step, record)
        return gated

    def _context(self, item: Any = None, index: int | None = None) -> dict[str, Any]:
        context: dict[str, Any] = dict(self.context)
        context["steps"] = {
            sid: {"outputs": self.outputs.get(sid, {}), "state": record.state}
            for sid, record in self.records.items()
            if record.state != "pending" or sid in self.outputs
        }
        if index is not None:
            context["item"] = item
            context["index"] = index
        return context

    def _submit(self, step: Step, record: StepRecord) -> None:
        record.started_at = clock.now()
        emit("step_started", step=step.id, name=step.display_name)
        units: deque[list[tuple[int, Any]]]
        try:
            if step.for_each is None:
                units = deque([[(-1, expressions.evaluate(step.with_, self._context()))]])
            else:
                items = expressions.evaluate_string(step.for_each, self._context())
                if not isinstance(items, list | tuple):
                    raise expressions.ExpressionError(f"for_each must give a list, got {type(items).__name__}")
                evaluated = [(i, expressions.evaluate(step.with_, self._context(item, i))) for i, item in enumerate(items)]
                record.items = len(evaluated)
                size = math.ceil(len(evaluated) / (step.max_concurrency * 8)) if len(evaluated) > CHUNK_ABOVE else 1
                units = deque(evaluated[i : i + size] for i in range(0, len(evaluated), size))
        except expressions.ExpressionError as exc:
            self._fail(step, record, str(exc))
            return
        self.queued[step.id] = units
        self.item_results[step.id] = {}
        if not units:
            self._complete(step, record)
            return
        for _ in range(step.max_concurrency if step.for_each else 1):
            self._submit_next(step)

    def _submit_next(self, step: Step) -> None:
        units = self.queued[step.id]
        if not units:
            return
        items = units.popleft()
        indices = [i for i, _ in items]
        task = self.tasks[step.id]
        if indices != [-1]:
            label = f"{indices[0]}" if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"
            task = task.with_options(task_run_name=f"{step.id}[{label}]")
        self.running[task.submit(items)] = _Unit(step.id, indices)

    def _wait_one(self, timeout: float | None = None) -> None:
        by_wrapped = {f.wrapped_future: f for f in self.running}
        done, _ = wait_futures(list(by_wrapped), timeout=timeout, return_when=FIRST_COMPLETED)
        for wrapped in done:
            future = by_wrapped[wrapped]
            unit = self.running.pop(future)
            step = self.playbook.step(unit.step_id)
            record = self.records[unit.step_id]
            future.wait()
            if future.state.is_completed():
                outcomes = future.result()
            else:  # the task itself crashed (not an action's error): every item it held failed
                message = self.masker.mask(future.state.message or "failed")
                try:
                    future.result(raise_on_failure=True)
                except Exception as exc:
                    message = self.masker.mask(str(exc)) or message
                outcomes = [(i, {"failed": True, "error": message}) for i in unit.indices]
            for index, output in outcomes:
                self.item_results[step.id][index] = output
                if isinstance(output, dict) and output.get("failed"):
                    if index < 0:
                        self._fail(step, record, str(output.get("error")))
                    else:
                        record.failed_items.append(index)
                        record.reason = f"item {index}: {output.get('error')}"
            if record.state != "pending":
                continue
            self._submit_next(step)
            if not self.queued[step.id] and not any(u.step_id == step.id for u in self.running.values()):
                if record.failed_items:
                    first = min(record.failed_items)
                    error = self.item_results[step.id][first].get("error")
                    self._fail(
                        step,
                        record,
                        f"{len(record.failed_items)} of {record.items} items failed; first: item {first}: {error}",
                        outputs=self._item_outputs(step.id),
                    )
                else:
                    self._complete(step, record)

    def _item_outputs(self, step_id: str) -> list[Any]:
        results = self.item_results[step_id]
        return [results.get(i) for i in range(len(results))]

    # ---------------------------------------------------------------- outcomes

    def _complete(self, step: Step, record: StepRecord) -> None:
        if step.for_each is None:
            outputs = self.item_results[step.id].get(-1, {})
            record.changed = bool(isinstance(outputs, dict) and outputs.get("changed"))
            record.detail = str(outputs.get("detail", "")) if isinstance(outputs, dict) else ""
        else:
            outputs = self._item_outputs(step.id)
            record.changed = any(isinstance(o, dict) and o.get("changed") for o in outputs)
            changed = sum(1 for o in outputs if isinstance(o, dict) and o.get("changed"))
            record.detail = f"{len(outputs)} item(s), {changed} changed"
        self.outputs[step.id] = outputs
        record.outputs = outputs
        self._finish(record, "completed")

    def _fail(self, step: Step, record: StepRecord, message: str, outputs: Any = None) -> None:
        message = self.masker.mask(message)
        if outputs is not None:
            self.outputs[step.id] = outputs
            record.outputs = outputs
            record.changed = any(isinstance(o, dict) and o.get("changed") for o in outputs)
        self.log.error("Step %s failed: %s", step.id, message)
        self._finish(record, "failed", reason=message)
        if step.on_failure == "abort" and self.abort_reason is None:
            self.abort_reason = f"step {step.id} failed: {message}"

    def _finish(self, record: StepRecord, state: str, reason: str = "") -> None:
        now = clock.now()
        record.state = state  # type: ignore[assignment]
        if reason:
            record.reason = reason
        if record.started_at is not None:
            record.finished_at = now
        emit("step_finished", record=record.model_copy(deep=True))
        self.journal.step(record, self.masker)
        if self.thread:
            self.thread.step(record)

    # ---------------------------------------------------------------- gates

    def _tell(self, kind: str, **data: Any) -> None:
        emit(kind, **data)
        if self.thread is not None:
            try:
                self.thread.gate(kind, data)
            except Exception as exc:  # telling people must not stop the gate
                self.log.warning("gate notification failed: %s", exc)

    def _open_gate(self, step: Step) -> None:
        approval = step.approval
        if approval is None:  # _schedule queues only gated steps here
            raise RuntimeError(f"step {step.id} has no gate")
        if self.run.dry_run:
            self._pass_gate_in_dry_run(step, approval)
            return
        try:
            message = str(expressions.evaluate_string(approval.message, self._context())) if approval.message else ""
        except expressions.ExpressionError as exc:
            message = f"(the gate's message could not be rendered: {exc})"
        message = self.masker.mask(message or f"Run step {step.display_name} ({step.uses})?")
        partial = self._partial_reads()
        if partial:
            message += " Note: " + "; ".join(partial)
        if approval.separate_duties and not self.run.launcher_verified:
            message += f" (launcher unverified: {self.run.launched_by!r} is only a claim)"
        try:
            if step.for_each is None:
                arguments: Any = expressions.evaluate(step.with_, self._context())
            else:
                items = expressions.evaluate_string(step.for_each, self._context())
                arguments = {"for each of": f"{len(items)} item(s)" if isinstance(items, list) else items, **step.with_}
        except expressions.ExpressionError as exc:
            arguments = {"(not yet known)": str(exc)}
        details = {"action": step.uses, "arguments": self.masker.mask_data(arguments)}
        gate = Gate.open(step, self.playbook.approvers, self.run, message, details)
        saved = self.saved_gates.pop(step.id, None)
        if saved:
            self._reopen(gate, saved)
        else:
            self.journal.gate(
                step.id, "opened", {"at": gate.opened_at.isoformat(), "deadline": gate.deadline_at.isoformat()}
            )
        self.gates[step.id] = gate
        self._tell(
            "gate_opened",
            gate=step.id,
            step=step.display_name,
            group=" or ".join(gate.group_names),
            members=sorted(gate.allowed),
            min_approvals=approval.min_approvals,
            deadline=gate.deadline_at,
            message=message,
            **details,
        )
        self.log.warning(
            "Gate before %r is waiting for %d approval(s) from %s (%s) until %s UTC. Answer with: "
            "stanch approve %s --gate %s --as NAME --approve|--reject --reason TEXT",
            step.id,
            approval.min_approvals,
            " or ".join(gate.group_names),
            ", ".join(sorted(gate.allowed)),
            gate.deadline_at.strftime("%H:%M:%S"),
            self.flow_run_id,
            step.id,
        )
        self._publish_gates()

    def _reopen(self, gate: Gate, saved: dict[str, dict[str, Any]]) -> None:
        """A gate that was open when the process died: its original deadline, its approvals re-verified."""
        window = saved.get("escalated") or saved.get("opened") or {}
        if window.get("deadline"):
            gate.deadline_at = datetime.fromisoformat(str(window["deadline"]))
            gate.opened_at = datetime.fromisoformat(str(saved.get("opened", window).get("at", window["deadline"])))
        gate.escalated = "escalated" in saved
        for event, data in sorted(saved.items()):
            if event.startswith("approval"):
                record, _ = gate.offer(GateAnswer.model_validate(data), self.verification, self.log, replayed=True)
                if not record.accepted:
                    self.log.warning("A recorded approval no longer verifies and is dropped: %s", record.refusal)
        self.log.warning(
            "Gate before %r re-opened after a resume: %d approval(s) kept, deadline %s UTC",
            gate.id,
            len(gate.approvals),
            gate.deadline_at.strftime("%H:%M:%S"),
        )

    def _poll_gates(self) -> bool:
        """Judge the answers that arrived, then apply deadlines and escalations; True when a gate closed."""
        open_before = len(self.gates)
        try:
            answers = self.journal.new_answers(self.seen_answers)
        except Exception as exc:  # the Prefect API is briefly unreachable: try again at the next poll
            self.log.warning("could not read gate answers: %s", exc)
            answers = []
        for key, data in answers:
            self.seen_answers.add(key)
            try:
                answer = GateAnswer.model_validate(data)
            except ValidationError:
                self.journal.verdict(key, {"accepted": False, "refusal": "not a gate answer"})
                continue
            gate = self.gates.get(answer.gate)
            if gate is None:
                refusal = f"gate {answer.gate!r} is not open (open: {', '.join(sorted(self.gates)) or 'none'})"
                self.journal.verdict(key, {"accepted": False, "refusal": refusal})
                continue
            before = len(gate.approvals)
            record, verdict = gate.offer(answer, self.verification, self.log)
            if len(gate.approvals) > before:
                self.journal.gate(gate.id, f"approval{len(gate.approvals)}", answer.model_dump())
            self.journal.verdict(key, verdict)
            self._tell("gate_answer", gate=gate.id, record=record, verdict=verdict)
            if gate.outcome is not None:
                self._close_gate(gate)
            else:
                self._publish_gates()
        for gate in list(self.gates.values()):
            event = gate.tick(self.log)
            if event == "escalated":
                a = gate.approval
                escalated = {"at": clock.now().isoformat(), "deadline": gate.deadline_at.isoformat()}
                self.journal.gate(gate.id, "escalated", escalated)
                self._tell(
                    "gate_escalated",
                    gate=gate.id,
                    group=a.escalate_to,
                    members=sorted(self.playbook.approvers.get(str(a.escalate_to), [])),
                    deadline=gate.deadline_at,
                )
                self._publish_gates()
            elif event == "closed":
                self._close_gate(gate)
        return len(self.gates) < open_before

    def _close_gate(self, gate: Gate) -> None:
        outcome = gate.outcome
        if outcome is None:
            return
        del self.gates[gate.id]
        step, record = gate.step, self.records[gate.id]
        self.journal.gate(
            gate.id,
            "closed",
            {
                "status": outcome.status,
                "policy": outcome.policy,
                "message": outcome.message,
                "decisions": [d.model_dump(mode="json") for d in outcome.decisions],
            },
        )
        record.decisions.extend(outcome.decisions)
        self._gate_artifact(step, outcome)
        decided = "; ".join(
            f"{_PAST[d.decision]} by {d.approver} at {d.at:%H:%M:%S} UTC via {d.channel}: {d.reason}"
            for d in outcome.decisions
            if d.accepted and d.decision != "timeout"
        )
        emit("gate_closed", gate=step.id, status=outcome.status, policy=outcome.policy, message=outcome.message)
        if self.thread:
            self.thread.gate(
                "gate_closed", {"gate": step.id, "status": outcome.status, "message": decided or outcome.message}
            )
        self._publish_gates()
        if outcome.status == "approved":
            self.approved.add(step.id)
            return
        if outcome.status == "rejected":
            self._finish(record, "rejected", reason=f"gate {outcome.message}")
            self.cancel_reasons.append(f"gate before {step.id} {outcome.message}")
            return
        self._finish(record, "timed_out", reason=f"gate: {outcome.message}")
        if outcome.policy == "continue":
            self.notes.append(f"gate before {step.id} timed out; skipped per on_timeout: continue")
        else:
            self.cancel_reasons.append(f"gate before {step.id} timed out: {outcome.message}")

    def _drop_gate(self, gate: Gate, reason: str) -> None:
        del self.gates[gate.id]
        self._finish(self.records[gate.id], "not_run", reason=reason)
        self._publish_gates()

    def _publish_gates(self) -> None:
        """The open gates, for `stanch approve` (a run input) and for people (an artifact in the Prefect UI)."""
        from prefect.artifacts import create_markdown_artifact

        listing = [g.describe() for g in self.gates.values()]
        self.journal.open_gates(listing)
        lines = ["# Open gates", ""]
        if listing:
            lines += ["| gate | who may answer | approvals | until (UTC) |", "| --- | --- | --- | --- |"]
            for g in listing:
                who = f"{g['group']}: {', '.join(g['members'])}"
                count = f"{len(g['approvals'])} of {g['min_approvals']}"
                lines.append(f"| {g['gate']} | {who} | {count} | {g['deadline'][:19].replace('T', ' ')} |")
            lines += ["", f"Answer with `stanch approve {self.flow_run_id} --gate GATE ...` or the Slack buttons."]
        else:
            lines.append("No gate is waiting.")
        try:
            create_markdown_artifact(key="open-gates", markdown="\n".join(lines), description=f"{len(listing)} open gate(s)")
        except Exception as exc:
            self.log.debug("could not write the open-gates artifact: %s", exc)

    def _pass_gate_in_dry_run(self, step: Step, approval: Approval) -> None:
        """A dry-run waits for nobody: it says who it would ask and goes on, so the plan shows the whole path."""
        members = ", ".join(self.playbook.approvers.get(approval.from_, []))
        text = (
            f"would wait for {approval.min_approvals} approval(s) from {approval.from_} ({members}) "
            f"for {approval.timeout}, on timeout {approval.on_timeout}; treated as approved in this dry-run"
        )
        self.log.info("Gate before %r: %s", step.id, text)
        emit("gate_dry_run", gate=step.id, message=text)
        self.records[step.id].reason = f"gate {text}"
        self.approved.add(step.id)

    def _gate_artifact(self, step: Step, outcome: GateOutcome) -> None:
        from prefect.artifacts import create_markdown_artifact

        from flows.engine.records import decisions_table

        body = f"# Gate before `{step.id}`: {outcome.status}\n\n{outcome.message}\n\n"
        body += decisions_table(outcome.decisions)
        try:
            create_markdown_artifact(key=f"gate-{step.id}", markdown=self.masker.mask(body), description=outcome.message)
        except Exception as exc:  # the decision stands in the run's records and logs regardless
            self.log.warning("could not write the gate artifact: %s", exc)

    # ---------------------------------------------------------------- summary

    def _partial_reads(self) -> list[str]:
        """What the run could not read (a log review that skipped bad files or records): said wherever the
        review's findings are acted on, so nobody takes a partial review for a whole one."""
        notes = []
        for step_id, outputs in self.outputs.items():
            if isinstance(outputs, dict) and outputs.get("partial"):
                files, records = outputs.get("files_skipped_total", 0), outputs.get("records_skipped_total", 0)
                skipped = outputs.get("files_skipped") or outputs.get("records_skipped") or [{}]
                first = skipped[0] if isinstance(skipped[0], dict) else {}
                notes.append(
                    f"{step_id} was partial: {files} file(s) and {records} record(s) could not be read"
                    + (f" (first: {first.get('file')}: {first.get('reason')})" if first.get("file") else "")
                )
        return notes

    def _summary(self) -> RunSummary:
        failed = [r for r in self.records.values() if r.state == "failed"]
        if self.abort_reason is not None:
            state, message = "Failed", self.abort_reason
        elif self.cancel_reasons:
            state, message = "Cancelled", "; ".join(self.cancel_reasons)
        else:
            state = "Completed"
            parts = [f"step {r.id} failed (on_failure: continue): {r.reason}" for r in failed] + self.notes
            message = "; ".join(parts) or "all steps finished"
        partial = self._partial_reads()
        if partial:
            message += "; " + "; ".join(partial)
        if self.thread and self.thread.failures:
            message += f" ({len(self.thread.failures)} Slack notification(s) failed: {self.thread.failures[0]})"
        return RunSummary(
            run_id=str(self.flow_run_id),
            playbook=self.playbook.metadata.name,
            incident_id=self.run.incident_id,
            mode=self.run.mode,
            state=state,  # type: ignore[arg-type]
            message=self.masker.mask(message),
            steps=list(self.records.values()),
        )
