"""The incident thread: one Slack thread per run, kept by the runtime itself.

It says when the run starts, asks each gate's approvers (Block Kit, Approve/Reject buttons, a reason field),
updates the gate's message when it closes, escalates, tells each step that changed something or failed, and
ends with a summary table and a link to the run. A Slack failure never fails the run: it is recorded and
shown at the end.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from flows.config import Settings
from integrations.context import RunInfo
from integrations.masking import SecretMasker
from integrations.slack import escape, escape_blocks


def slack_client(
    settings: Settings, masker: SecretMasker | None = None, aws_client: Any = None, read_only: bool = False
) -> Any:
    """The configured Slack client (made by integrations.context), or None without a token."""
    from flows.config import aws_client_factory
    from integrations.context import slack_client as make_client

    ref = settings.slack.token
    if ref is None:
        return None
    token = ref.resolve(aws_client or aws_client_factory(settings))
    if not token:
        return None
    if masker is not None:
        masker.register(token)
    return make_client(token, settings.slack.base_url, read_only=read_only)


class IncidentThread:
    def __init__(
        self,
        settings: Settings,
        run: RunInfo,
        masker: SecretMasker,
        log: logging.Logger | logging.LoggerAdapter[Any],
        ui_url: str | None,
        aws_client: Any = None,
    ):
        self.settings = settings
        self.run = run
        self.masker = masker
        self.log = log
        self.ui_url = ui_url
        self.failures: list[str] = []
        self.channel = settings.slack.incident_channel or settings.slack.default_channel
        self.approval_channel = settings.approvals.channel or self.channel
        self.escalation_channel = settings.approvals.escalation_channel or self.approval_channel
        self.root: dict[str, str] | None = None
        self.gate_messages: dict[str, dict[str, str]] = {}
        self.client: Any = None
        if run.dry_run:
            log.info("Dry-run: the incident thread is not posted (a dry-run sends nothing)")
            return
        try:
            self.client = slack_client(settings, masker, aws_client) if settings.slack.incident_thread else None
        except Exception as exc:
            self._failed("connect", exc)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def _failed(self, what: str, exc: BaseException) -> None:
        message = self.masker.mask(f"Slack {what} failed: {getattr(exc, 'response', {}) or exc}")
        self.failures.append(message)
        self.log.warning("%s (the run goes on)", message)

    def _post(self, what: str, channel: str, text: str, **extra: Any) -> dict[str, str] | None:
        if not self.enabled:
            return None
        try:
            kwargs: dict[str, Any] = {"channel": channel, "text": escape(self.masker.mask(text)), **extra}
            if "blocks" in kwargs:
                kwargs["blocks"] = escape_blocks(self.masker.mask_data(kwargs["blocks"]))
            response = self.client.chat_postMessage(**kwargs)
            return {"channel": str(response["channel"]), "ts": str(response["ts"])}
        except Exception as exc:
            self._failed(what, exc)
            return None

    def _reply(self, what: str, text: str, **extra: Any) -> dict[str, str] | None:
        if self.root is None:
            return None
        return self._post(what, self.root["channel"], text, thread_ts=self.root["ts"], **extra)

    def _update(self, what: str, where: dict[str, str], text: str) -> None:
        if not self.enabled:
            return
        try:
            self.client.chat_update(channel=where["channel"], ts=where["ts"], text=escape(self.masker.mask(text)), blocks=[])
        except Exception as exc:
            self._failed(what, exc)

    # ---------------------------------------------------------------- the run

    def start(self, title: str, resumed_root: Any = None) -> dict[str, str] | None:
        """Post the thread's root; a resumed run replies in the thread it started instead. Returns the root."""
        if isinstance(resumed_root, dict) and {"channel", "ts"} <= resumed_root.keys() and self.enabled:
            self.root = {"channel": str(resumed_root["channel"]), "ts": str(resumed_root["ts"])}
            self._reply("resume", f"The run was resumed (incident {self.run.incident_id}); it goes on from its journal.")
            return self.root
        link = f" {self.ui_url}" if self.ui_url else ""
        self.root = self._post(
            "start",
            self.channel,
            f"Incident {self.run.incident_id}: {title} ({self.run.playbook}, {self.run.mode}), "
            f"launched by {self.run.launched_by} ({self.run.trigger}).{link}",
        )
        return self.root

    def step(self, record: Any) -> None:
        if record.state == "failed" or (record.state == "completed" and record.changed):
            mark = "changed" if record.state == "completed" else "FAILED"
            self._reply("step", f"{record.id} ({record.phase}) {mark}: {record.detail or record.reason}")

    def finish(self, summary: Any) -> None:
        rows = [f"{'step':<28} {'phase':<10} {'state':<10} {'time':>6}  changed"]
        for s in summary.steps:
            duration = f"{s.duration:.1f}s" if s.duration is not None else ""
            rows.append(f"{s.id[:28]:<28} {s.phase:<10} {s.state:<10} {duration:>6}  {'yes' if s.changed else ''}")
        link = f"\n{self.ui_url}" if self.ui_url else ""
        text = f"{summary.state}: {summary.message}\n```\n" + "\n".join(rows) + f"\n```{link}"
        self._reply("summary", text)
        if self.root is not None:
            self._update("root", self.root, f"Incident {self.run.incident_id}: {self.run.playbook} ended {summary.state}.")

    # ---------------------------------------------------------------- gates

    def _slack_mentions(self, names: list[str]) -> str:
        ids = [who.slack_user_id for name, who in self.settings.approvers.items() if name in names and who.slack_user_id]
        return " ".join(f"<@{i}>" for i in ids)

    def gate(self, kind: str, data: dict[str, Any]) -> None:
        """Gate events from flows.engine.gates."""
        if not self.enabled:
            return
        gate = str(data.get("gate"))
        if kind == "gate_opened":
            deadline: datetime = data["deadline"]
            value = json.dumps({"run_id": self.run.id, "gate": gate})
            blocks = [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"Approval needed before {gate}: {data['message']}"}},
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"{data.get('action', '')}: "
                        + ", ".join(f"{k}={v}" for k, v in (data.get("arguments") or {}).items())[:2500],
                    },
                },
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"{data['min_approvals']} approval(s) from {data['group']} "
                            f"({', '.join(data['members'])}) by {deadline:%H:%M:%S} UTC",
                        }
                    ],
                },
                {
                    "type": "input",
                    "block_id": "reason",
                    "optional": True,
                    "label": {"type": "plain_text", "text": "Reason"},
                    "element": {"type": "plain_text_input", "action_id": "stanch_reason"},
                },
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Approve"},
                            "style": "primary",
                            "action_id": "stanch_approve",
                            "value": value,
                        },
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Reject"},
                            "style": "danger",
                            "action_id": "stanch_reject",
                            "value": value,
                        },
                    ],
                },
            ]
            text = f"Approval needed before {gate}: {data['message']}"
            extra: dict[str, Any] = {"blocks": blocks}
            where = (
                self._post("gate", self.approval_channel, text, **extra)
                if self.root is None or self.approval_channel != self.channel
                else self._reply("gate", text, reply_broadcast=True, **extra)
            )
            if where:
                self.gate_messages[gate] = {**where, "text": text}
        elif kind == "gate_escalated":
            mentions = self._slack_mentions(data.get("members", []))
            text = f"Escalated: the gate before {gate} had no decision in time; {data['group']} may now decide."
            where = self._post("escalation", self.escalation_channel, text)
            if where and mentions:
                # The mentions are ours (configured Slack ids), so they bypass the escaping of text.
                try:
                    self.client.chat_postMessage(channel=where["channel"], thread_ts=where["ts"], text=mentions)
                except Exception as exc:
                    self._failed("escalation mention", exc)
        elif kind == "gate_closed" and gate in self.gate_messages:
            where = self.gate_messages[gate]
            self._update("gate", where, f"{where['text']}\nGate {data['status']}: {data['message']}")
