"""Throttling and 5xx from AWS: botocore's adaptive retries absorb them and the playbook ends the same."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from conftest import playbook

from flows.engine.launch import run_playbook
from integrations.context import AwsClients

pytestmark = pytest.mark.usefixtures("prefect_api")

PLAYBOOK = """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: throttled, title: Throttled, severity: low}
inputs:
  key: {type: string}
steps:
  - {id: before, phase: review, uses: aws.iam.list_access_keys, with: {user_name: ci-deployer}}
  - id: contain
    phase: contain
    needs: [before]
    uses: aws.iam.deactivate_access_key
    with: {access_key_id: "${{ inputs.key }}", user_name: ci-deployer}
  - {id: after, phase: review, needs: [contain], uses: aws.iam.list_access_keys, with: {user_name: ci-deployer}}
"""


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


class Faults:
    """Answers every other AWS request with a throttling error or a 503, up to a budget."""

    def __init__(self, budget: int):
        self.budget = budget
        self.seen = 0
        self.injected: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        with self.lock:
            self.seen += 1
            if len(self.injected) >= self.budget or self.seen % 2 == 0:
                return None
            status = 400 if len(self.injected) % 3 else 503
            self.injected.append(status)
        code = b"Throttling" if status == 400 else b"ServiceUnavailable"
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>"
            + code
            + b"</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
        )
        return AWSResponse(request.url, status, {}, _Raw(body))


@pytest.fixture
def faults() -> Iterator[Faults]:
    injector = Faults(budget=6)
    AwsClients.event_hooks.append(("before-send.iam", injector))
    try:
        yield injector
    finally:
        AwsClients.event_hooks.remove(("before-send.iam", injector))


def test_injected_throttling_and_503s_do_not_change_the_outcome(sandbox: Any, faults: Faults) -> None:
    key = sandbox.keys["ci-deployer"][0]
    summary = run_playbook(playbook(PLAYBOOK, "throttled.yaml"), {"key": key}, launched_by="erin")
    assert summary.state == "Completed", summary.message
    assert faults.injected.count(400) >= 3 and 503 in faults.injected, faults.injected
    assert sandbox.key_states()[key] == "ci-deployer: Inactive"
    after = next(s for s in summary.steps if s.id == "after")
    assert after.outputs["active"] == 0
