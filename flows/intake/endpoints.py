"""The alert endpoints of `stanch serve`: POST /alerts/eventbridge, /alerts/github, /alerts/generic (and /alerts/sns).

Each answers JSON `{accepted, run_id, reason}`: 202 when a run was started (or the alert matched no playbook,
which is recorded and said), 200 when a second alert for a key joins that key's open run, 4xx for anything a
sender got wrong (nothing is started and the attempt is logged), 503 when the run could not be started for a
reason of the service's own (Prefect unreachable, the runner full): the sender retries, and the delivery is not
taken as seen. Every matching playbook is tried for every key the alert names (one run per key); a routed alert's
answer also lists each outcome in `results` (playbook, access_key_id, outcome started/joined/handed/started
before/failed, run_id, incident_id, status, reason) and the status is the whole's: 503 when one could not start
for a reason of the service's own (the sender retries; what the delivery started is recorded and not started
again), else 202 when any run started, even if others failed; a failure's own status only when nothing took
effect.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from flows.alerts import AlertError, normalize, parse_alert
from flows.config import ConfigError, Settings, error_summary, is_local_sandbox, resolve_secret
from flows.intake.enrich import GITHUB_AWS_TYPES, EnrichError, github_key_id, key_owner
from flows.intake.launcher import Launcher, RunnerBusy
from flows.intake.routing import RouteError, first_trigger, trigger_inputs, triggered_playbooks
from flows.intake.sources import (
    Refusal,
    check_generic,
    check_github,
    check_sns,
    check_token,
    confirm_subscription,
    delivery_id,
)
from integrations.masking import SecretMasker

_log = logging.getLogger("stanch.intake")
OPEN_RUN_SECONDS = 7 * 86400  # a deployment run's key is held until Prefect says the run ended
MAX_KEYS_PER_ALERT = 20  # an alert names keys from outside: each is a run, so their number is bounded
SOURCES = {
    "eventbridge": ("aws.health", "aws.guardduty"),
    "sns": ("aws.health", "aws.guardduty"),
    "github": ("github.secret_scanning",),
    "generic": None,  # any alert
}


class Intake:
    """What the endpoints share: the resolved secrets, the triggered playbooks, the launcher and the state."""

    def __init__(self, settings: Settings, state: Any, masker: SecretMasker, signer: Any = None, slack: Any = None) -> None:
        self.settings = settings
        self.slack = slack  # the service's Slack client: a joined alert is posted to its run's incident thread
        self.state = state
        self.masker = masker
        self.secrets: dict[str, str | None] = {}
        for name in ("eventbridge_token", "generic_secret", "github_secret", "github_token"):
            value = resolve_secret(settings, f"intake.{name}")
            if value:
                masker.register(value)
            elif name != "github_token":
                _log.warning("intake.%s is not set: its endpoint refuses every alert", name)
            self.secrets[name] = value
        if settings.intake.sandbox and settings.intake.route == "runner" and not is_local_sandbox(settings):
            # a runner's sandbox run would act on the configured AWS: only the local sandbox may be used so
            raise ConfigError("intake.sandbox: with the runner route, AWS must be the local sandbox (aws.endpoint_url)")
        self.playbooks = triggered_playbooks(settings.playbook_dirs)
        self.launcher = Launcher(settings, signer)
        self.launcher.warm(self.playbooks)
        self.keep_deliveries = settings.intake.deliveries_days * 86400
        names = ", ".join(p.metadata.name for p in self.playbooks) or "none"
        _log.info("alert intake: route %s; playbooks with triggers: %s", settings.intake.route, names)

    # ------------------------------------------------------------------ endpoints

    async def eventbridge(self, request: Request) -> JSONResponse:
        async def check(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], str]:
            check_token(self.secrets["eventbridge_token"], headers)
            raw = _parsed(body)
            return raw, delivery_id(raw.get("id"), "the EventBridge event's id")

        return await self._endpoint(request, "eventbridge", check)

    async def generic(self, request: Request) -> JSONResponse:
        async def check(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], str]:
            signature = check_generic(self.secrets["generic_secret"], headers, body)
            raw = _parsed(body)
            return raw, delivery_id(raw["id"], "the alert's id") if "id" in raw else f"sig:{signature}"

        return await self._endpoint(request, "generic", check)

    async def github(self, request: Request) -> JSONResponse:
        async def check(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], str]:
            event = check_github(self.secrets["github_secret"], headers, body)
            if event == "ping":
                raise Refusal(200, "pong: the webhook is set up; send secret_scanning_alert events")
            if event != "secret_scanning_alert":
                raise Refusal(400, f"X-GitHub-Event {event[:60]!r}: this endpoint takes secret_scanning_alert only")
            raw = _parsed(body)
            return raw, delivery_id(headers.get("x-github-delivery"), "X-GitHub-Delivery")

        return await self._endpoint(request, "github", check)

    async def sns(self, request: Request) -> JSONResponse:
        import anyio

        intake = self.settings.intake

        async def check(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], str]:
            if not intake.sns_enabled:
                raise Refusal(403, "/alerts/sns takes no alerts: intake.sns_enabled is false")
            message = _parsed(body)
            args = (intake.sns_cert_host, intake.sns_cert_https)
            await anyio.to_thread.run_sync(check_sns, message, *args, intake.sns_topic_arns)
            if message["Type"] == "SubscriptionConfirmation":
                await anyio.to_thread.run_sync(confirm_subscription, message, *args)
                raise Refusal(200, f"subscription to {message['TopicArn']} confirmed")
            if message["Type"] == "UnsubscribeConfirmation":
                raise Refusal(200, f"unsubscribed from {message['TopicArn']}; nothing to do")
            return _parsed(message["Message"].encode()), delivery_id(message.get("MessageId"), "MessageId")

        return await self._endpoint(request, "sns", check)

    async def _endpoint(self, request: Request, endpoint: str, check: Any) -> JSONResponse:
        import anyio

        from flows.approvals.service import _body

        where = f"/alerts/{endpoint} from {request.client.host if request.client else '?'}"
        body = await _body(request)
        try:
            if body is None:
                raise Refusal(413, "the body is over the size limit (1 MB)")
            raw, delivery = await check(request.headers, body)
        except Refusal as refusal:
            return self._refused(where, refusal)
        except Exception as exc:  # a check that broke on odd input is still the sender's problem, never a 5xx
            return self._refused(where, Refusal(400, f"the request could not be checked: {error_summary(exc)}"))
        try:
            status, answer = await anyio.to_thread.run_sync(self.handle, endpoint, raw, delivery)
        except Exception as exc:  # the service's own failure (its state store, a bug): the sender retries
            why = self.masker.mask(error_summary(exc))
            _log.error("alert at %s could not be handled: %s", where, why)
            return JSONResponse(_no(f"the alert could not be handled, try again: {why}"), status_code=503)
        return JSONResponse(answer, status_code=status)

    def _refused(self, where: str, refusal: Refusal) -> JSONResponse:
        level = logging.INFO if refusal.status < 400 else logging.WARNING
        _log.log(level, "alert refused at %s: %d %s", where, refusal.status, self.masker.mask(refusal.reason))
        return JSONResponse({"accepted": False, "run_id": None, "reason": refusal.reason}, status_code=refusal.status)

    # ------------------------------------------------------------------ one alert

    def handle(self, endpoint: str, raw: dict[str, Any], delivery: str) -> tuple[int, dict[str, Any]]:
        """Route one verified alert and start (or join) its run: (HTTP status, answer)."""
        try:
            facts = normalize(raw)
        except AlertError as exc:
            return self._answer(422, f"the alert cannot be used: {exc}", endpoint, delivery)
        del raw  # from here on, only the sanitized alert (facts["raw"]) is used
        expected = SOURCES[endpoint]
        if expected is not None and facts["source"] not in expected:
            return self._answer(
                422, f"/alerts/{endpoint} takes {', '.join(expected)} alerts, not {facts['source']}", endpoint, delivery
            )
        seen_key = f"{endpoint}:{delivery}"
        earlier = self.state.hold("delivery", seen_key, "", self.keep_deliveries)
        if earlier is not None:
            return self._answer(
                409,
                f"delivery {delivery} was already received; nothing new was started",
                endpoint,
                delivery,
                earlier or None,
            )
        try:
            status, answer = self._route(facts, seen_key)
        except Exception:
            self.state.release("delivery", seen_key)
            raise
        if status >= 500:
            self.state.release("delivery", seen_key)  # the sender's retry must be taken
        elif answer.get("run_id"):
            self.state.put("delivery", seen_key, answer["run_id"], self.keep_deliveries)
        _log.info(
            "alert %s %s (%s, %s): %d %s",
            endpoint,
            delivery,
            facts["source"],
            facts["kind"],
            status,
            self.masker.mask(str(answer["reason"])),
        )
        return status, answer

    def _answer(
        self, status: int, reason: str, endpoint: str, delivery: str, run_id: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        reason = self.masker.mask(reason)
        _log.log(
            logging.WARNING if status >= 400 else logging.INFO, "alert %s %s: %d %s", endpoint, delivery, status, reason
        )
        return status, {"accepted": False, "run_id": run_id, "reason": reason}

    def _route(self, facts: dict[str, Any], delivery: str = "") -> tuple[int, dict[str, Any]]:
        """Start (or join) a run for every matching playbook and every key the alert names; each outcome is in the
        answer's `results`. 503 when one could not start for a reason of the service's own (the sender retries
        the delivery; what it started already is recorded under the delivery and not started again); else 202
        when any run started, 200 when runs were only joined, and the failure's own status when nothing took
        effect."""
        self._github_key(facts)
        work = [
            (playbook, index, alert)
            for alert in _per_key(facts)
            for playbook in self.playbooks
            if (index := first_trigger(playbook, alert)) is not None
        ]
        if not work:
            reason = f"no playbook's trigger matches this {facts['source']} alert ({facts['kind']}); it is recorded"
            return 202, {"accepted": False, "run_id": None, "reason": reason}
        results = []
        for playbook, index, alert in work:
            try:
                result = self._start_once(playbook, index, alert, delivery)
            except Exception as exc:  # a bug or the state store: this one is lost, the others are still tried
                _log.error("alert run of %s could not be started: %s", playbook.metadata.name, error_summary(exc))
                result = _result(playbook, alert, "failed", f"the run could not be started: {error_summary(exc)}", 503)
            results.append({k: self.masker.mask(v) if isinstance(v, str) else v for k, v in result.items()})
        for skipped in _per_key_skipped(facts):
            why = f"{skipped}: not started, an alert starts runs for at most {MAX_KEYS_PER_ALERT} keys"
            entry: dict[str, Any] = {"playbook": None, "access_key_id": skipped, "outcome": "failed", "run_id": None}
            results.append({**entry, "incident_id": None, "status": 422, "reason": why})
        took = [r for r in results if r["outcome"] != "failed"]
        if any(r["outcome"] == "failed" and int(r["status"]) >= 500 for r in results):
            status = 503  # retried by the sender: what started is not started again (see _start_once)
        elif any(r["outcome"] in ("started", "handed", "started before") for r in took):
            status = 202
        elif took:
            status = 200
        else:
            status = max(int(r["status"]) for r in results)
        for r in results:
            if r["outcome"] == "failed" and took:
                _log.warning("alert run of %s not started: %s", r["playbook"], r["reason"])
        runs = [str(r["run_id"] or "") for r in took]
        reason = "; ".join(str(r["reason"]) for r in results)
        answer: dict[str, Any] = {"accepted": bool(took), "run_id": next((r for r in runs if r), None)}
        answer.update(reason=reason, runs=runs, results=results)
        return status, answer

    def _start_once(self, playbook: Any, index: int, facts: dict[str, Any], delivery: str) -> dict[str, Any]:
        """`_start_one`, once per delivery: a delivery retried after a 503 does not start again what it started."""
        if not delivery:
            return self._start_one(playbook, index, facts)
        pair = f"{delivery}|{playbook.metadata.name}|{facts.get('access_key_id') or ''}"
        earlier = self.state.hold("delivery-run", pair, "", self.keep_deliveries)
        if earlier is not None:
            why = f"started by an earlier try of this delivery (run {earlier or 'not named'})"
            return _result(playbook, facts, "started before", why, 202, earlier or None)
        try:
            result = self._start_one(playbook, index, facts)
        except BaseException:
            self.state.release("delivery-run", pair)
            raise
        if result["outcome"] == "failed":
            self.state.release("delivery-run", pair)
        else:
            self.state.put("delivery-run", pair, result["run_id"] or "", self.keep_deliveries)
        return result

    def _start_one(self, playbook: Any, index: int, facts: dict[str, Any]) -> dict[str, Any]:
        """Start (or join the open run of) one playbook for one key: an entry of the answer's `results`."""
        from flows.engine.flow import new_incident_id
        from flows.engine.launch import LaunchError

        name = playbook.metadata.name
        try:
            self._owner(playbook, facts)
            inputs = trigger_inputs(playbook, index, facts)
        except (RouteError, EnrichError) as exc:
            return _result(playbook, facts, "failed", str(exc), 422 if isinstance(exc, RouteError) else 503)
        key = f"{name}:{inputs.get('access_key_id') or facts.get('access_key_id') or ''}"
        held = self.state.hold("open-key", key, "", OPEN_RUN_SECONDS) if key[-1] != ":" else None
        if held is not None and (held == "" or self.launcher.is_open(held)):
            self._attach(held, facts)
            return _result(playbook, facts, "joined", f"joins the open run {held or '(starting)'} for this key", 200, held)
        if held is not None:
            self.state.put("open-key", key, "", OPEN_RUN_SECONDS)  # the old run ended: this alert starts one
        incident = new_incident_id()

        def ended(run_id: str | None, key: str = key) -> None:
            self.state.release("open-key", key)

        try:
            run_id = self.launcher.start(playbook, inputs, facts, incident, on_end=ended)
        except LaunchError as exc:
            self._release(key)
            return _result(playbook, facts, "failed", f"the alert's facts do not make its inputs: {exc}", 422)
        except RunnerBusy as exc:
            self._release(key)
            return _result(playbook, facts, "failed", str(exc), 503)
        except Exception as exc:
            self._release(key)
            return _result(playbook, facts, "failed", f"the run could not be started: {error_summary(exc)}", 503)
        try:
            if key[-1] != ":" and run_id:
                self.state.put("open-key", key, run_id, OPEN_RUN_SECONDS)
            elif self.launcher.route == "event":
                # the trigger makes the run: there is no id to join and no end to wait for, so hold nothing
                self._release(key)
        except Exception as exc:  # the run started all the same: only a later alert's joining is at risk
            _log.warning("run %s started, but its key could not be held: %s", run_id, error_summary(exc))
        if self.launcher.route == "event":
            return _result(
                playbook, facts, "handed", f"handed to its deployment trigger (incident {incident})", 202, run_id, incident
            )
        return _result(playbook, facts, "started", f"started (incident {incident})", 202, run_id, incident)

    def _release(self, key: str) -> None:
        if key[-1] != ":":
            self.state.release("open-key", key)

    def _owner(self, playbook: Any, facts: dict[str, Any]) -> None:
        """A key id without its user: the user from GetAccessKeyLastUsed, in the alert's account."""
        if "user_name" in playbook.inputs and not facts.get("user_name") and facts.get("access_key_id"):
            owner = key_owner(self.settings, str(facts["access_key_id"]), facts.get("account"))
            facts["user_name"] = owner or facts.get("named_user")

    def _github_key(self, facts: dict[str, Any]) -> None:
        """A GitHub alert for an AWS key: its key id through GitHub's API (only the id is kept)."""
        if facts["source"] != "github.secret_scanning" or facts["access_key_id"] or facts["kind"] not in GITHUB_AWS_TYPES:
            return
        alert = facts["raw"].get("alert") or {}
        token, repository = self.secrets["github_token"], facts.get("repository")
        if not token or not repository or not isinstance(alert.get("number"), int):
            _log.warning("a GitHub alert for an AWS key, but no intake.github_token (or no repository): no key id")
            return
        key_id = github_key_id(self.settings.intake.github_api_url, token, str(repository), int(alert["number"]))
        if key_id:
            facts["access_key_ids"] = [key_id]
            facts["access_key_id"] = key_id

    def _attach(self, run_id: str, facts: dict[str, Any]) -> None:
        """Say in the open run's log, and in its incident thread, that another alert for its key came in."""
        if not run_id:
            return
        from datetime import UTC, datetime
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import LogCreate

        from flows.engine.journal import THREAD_KEY, read_json_input

        message = self.masker.mask(f"another alert for this key joined the run: {facts['source']} {facts['kind']}")
        try:
            with get_client(sync_client=True) as client:
                client.create_logs(
                    [
                        LogCreate(
                            name="stanch.intake",
                            level=logging.INFO,
                            message=message,
                            timestamp=datetime.now(UTC),
                            flow_run_id=UUID(run_id),
                        )
                    ]
                )
        except Exception as exc:  # the alert still joins the run; only its note is lost
            _log.warning("could not note the alert on run %s: %s", run_id, error_summary(exc))
        if self.slack is None:
            return
        from integrations.slack import escape

        try:
            root = read_json_input(UUID(run_id), THREAD_KEY)
            if isinstance(root, dict) and root.get("ts"):
                self.slack.chat_postMessage(
                    channel=str(root["channel"]), thread_ts=str(root["ts"]), text=escape(message[:3000])
                )
        except Exception as exc:  # the alert still joins the run; the thread misses one note
            _log.warning("could not post the joined alert to run %s's thread: %s", run_id, error_summary(exc))


def _named_keys(facts: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(k for k in facts.get("access_key_ids") or [] if isinstance(k, str) and k))


def _per_key(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The alert once per key it names (an AWS Health event can list several): each key gets its own run, with
    the alert's facts about that key alone. An alert with one key or none is itself."""
    keys = _named_keys(facts)
    if len(keys) <= 1:
        return [facts]
    # A user the alert names belongs to one of its keys at most: each key's owner is looked up (`_owner`), and the
    # named user is only what a key falls back to when the lookup finds no owner (as an alert with one key).
    alone = {k: v for k, v in facts.items() if k != "user_name"}
    named = {"named_user": facts["user_name"]} if facts.get("user_name") else {}
    return [{**alone, **named, "access_key_id": key, "access_key_ids": [key]} for key in keys[:MAX_KEYS_PER_ALERT]]


def _per_key_skipped(facts: dict[str, Any]) -> list[str]:
    """The keys past MAX_KEYS_PER_ALERT: listed as not started."""
    return _named_keys(facts)[MAX_KEYS_PER_ALERT:]


def _result(
    playbook: Any,
    facts: dict[str, Any],
    outcome: str,
    why: str,
    status: int,
    run_id: str | None = None,
    incident: str | None = None,
) -> dict[str, Any]:
    """One entry of an answer's `results`: a playbook for a key, started, joined, handed to a trigger, or failed."""
    name = playbook.metadata.name
    key = facts.get("access_key_id")
    where = f"{name} for {key}" if key else name
    return {
        "playbook": name,
        "access_key_id": key,
        "outcome": outcome,
        "run_id": run_id or None,
        "incident_id": incident,
        "status": status,
        "reason": f"{where}: {why}" if outcome == "failed" else f"{where} {why}",
    }


def _no(reason: str) -> dict[str, Any]:
    return {"accepted": False, "run_id": None, "reason": reason}


def _parsed(body: bytes) -> dict[str, Any]:
    try:
        return parse_alert(body)
    except AlertError as exc:
        raise Refusal(400, f"the body is not a usable alert: {exc}") from None
