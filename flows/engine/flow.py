"""A playbook as a Prefect flow: one flow per playbook, named after it, whichever way a run is launched.

`playbook_flow` builds the flow (no I/O); its body checks the inputs again (a deployment run arrives with
whatever a person typed), runs the driver and returns the state the run ends in: Completed, Failed (naming
the step and why) or Cancelled (a gate rejected or timed out). A run that must not start ends Failed with
the reason, never with a traceback. Parameters never carry a secret value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flows.engine.observe import emit
from flows.engine.records import RunSummary
from flows.language.model import Playbook
from integrations.context import RunInfo, RunMode
from integrations.masking import SecretMasker


def new_incident_id() -> str:
    import secrets

    return f"inc-{datetime.now(UTC):%Y%m%d-%H%M}-{secrets.token_hex(2)}"


def _run_name() -> str:
    """A run is named after its incident; a run launched without one gets a new incident id as its name."""
    from prefect.runtime import flow_run

    return str(flow_run.parameters.get("incident_id") or new_incident_id())


def playbook_flow(playbook: Playbook) -> Any:
    """The Prefect flow of a playbook: named after it, with the same typed parameters for every launcher."""
    from prefect import flow

    def body(
        inputs: dict[str, Any],
        alert: dict[str, Any] | None = None,
        mode: RunMode = RunMode.LIVE,
        incident_id: str = "",
        trigger: str = "manual",
        launched_by: str = "unknown",
        sandbox: bool = False,
        launch_proof: str | None = None,
    ) -> Any:
        with deployment_sandbox(sandbox) as resolve:
            return execute_playbook(
                playbook, resolve(inputs), alert, mode, incident_id, trigger, launched_by, sandbox, launch_proof
            )

    return flow(  # type: ignore[call-overload]
        body,
        name=playbook.metadata.name,
        description=playbook.metadata.title,
        flow_run_name=_run_name,
        persist_result=False,
        log_prints=False,
        validate_parameters=True,
    )


@contextmanager
def deployment_sandbox(sandbox: bool) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """A run asked for the sandbox where none is configured (a deployment run on a worker with no account): the
    embedded sandbox is started for this run only, and `@sandbox:USER` inputs stand for that user's first key.
    Where the sandbox is already the configured AWS (`stanch run --sandbox`, tests), nothing changes."""
    from flows.config import ConfigError, is_local_sandbox, load_settings

    try:
        configured = is_local_sandbox(load_settings())
    except ConfigError:
        configured = False
    if not sandbox or configured:
        yield lambda inputs: inputs
        return
    from flows.sandbox import Sandbox

    box = Sandbox().start()  # activates itself: this run's AWS and Slack are the simulated ones

    def resolve(inputs: dict[str, Any]) -> dict[str, Any]:
        values = dict(inputs)
        for name, value in values.items():
            if isinstance(value, str) and value.startswith("@sandbox:"):
                user, _, index = value.removeprefix("@sandbox:").partition("#")
                keys = box.keys.get(user) or []
                position = int(index) if index.isdigit() else 0
                if position < len(keys):  # else the reference stays, and the input check names it
                    values[name] = keys[position]
        return values

    try:
        yield resolve
    finally:
        box.stop()


def execute_playbook(
    playbook: Playbook,
    inputs: dict[str, Any],
    alert: dict[str, Any] | None,
    mode: RunMode,
    incident_id: str,
    trigger: str,
    launched_by: str,
    sandbox: bool = False,
    launch_proof: str | None = None,
) -> Any:
    """The body of every Stanch flow run: returns the Prefect state the run ends in."""
    from prefect.context import FlowRunContext
    from prefect.logging import get_run_logger
    from prefect.states import Cancelled, Completed, Failed

    from flows.config import load_settings
    from flows.engine.driver import Driver
    from flows.engine.launch import LaunchError, checked_inputs
    from flows.engine.notify import IncidentThread
    from flows.engine.ui import flow_run_url

    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError("execute_playbook runs inside a Prefect flow run")
    flow_run = flow_ctx.flow_run
    logger = get_run_logger()
    try:
        values = checked_inputs(playbook, inputs)
    except LaunchError as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc))
    settings = load_settings()
    incident = incident_id or flow_run.name
    run = RunInfo(
        id=str(flow_run.id),
        playbook=playbook.metadata.name,
        incident_id=incident,
        mode=RunMode(mode),
        launched_by=launched_by,
        trigger=trigger,
        sandbox=sandbox,
        launcher_verified=_launcher_verified(
            settings, playbook, incident, launched_by, launch_proof, logger, run_id=str(flow_run.id)
        ),
    )
    _tag_run(flow_run.id, run)
    ui_url = flow_run_url(flow_run.id, settings)
    emit("run_started", run_id=str(flow_run.id), name=flow_run.name, ui_url=ui_url)
    logger.info(
        "Playbook %s, incident %s, mode %s, launched by %s (%s, %s)",
        run.playbook,
        run.incident_id,
        run.mode.value,
        launched_by,
        "verified by the approval service" if run.launcher_verified else "an unverified claim",
        trigger,
    )
    driver = Driver(playbook, values, alert, run, flow_run.id, settings, logger)
    driver.thread = IncidentThread(settings, run, driver.masker, logger, ui_url, aws_client=driver.ctx.aws.client)
    from flows.engine.journal import THREAD_KEY, read_json_input

    saved_root = read_json_input(flow_run.id, THREAD_KEY)
    root = driver.thread.start(playbook.metadata.title, resumed_root=saved_root)
    if root is not None and saved_root is None:
        driver.journal.write(THREAD_KEY, root)  # later alerts for this key, and a resume, reply in this thread
    summary = driver.execute()
    summary.flow_run_name = flow_run.name
    summary.ui_url = ui_url
    driver.thread.finish(summary)
    _summary_artifact(summary, logger, driver.masker)
    emit("run_finished", summary=summary)
    if summary.state == "Failed":
        return Failed(message=summary.message, data=summary)
    if summary.state == "Cancelled":
        return Cancelled(message=summary.message, data=summary)
    return Completed(message=summary.message, data=summary)


LAUNCH_CLAIM_KEY = "stanch-launch"  # flow-run input: the nonce of the launch proof this run took as its own


def _launcher_verified(
    settings: Any,
    playbook: Playbook,
    incident: str,
    launched_by: str,
    proof: str | None,
    logger: Any,
    run_id: str | None = None,
    now: float | None = None,
) -> bool:
    """Whether the approval service vouched for the launcher: its signature over playbook, incident and name, taken
    by this flow run alone. Parameters are readable by anyone with Prefect API access, so a proof counts only for
    the first run that uses it (and only when first used within LAUNCH_MAX_AGE_SECONDS of its signing); that run,
    resumed, is accepted again at any age. A refused proof never stops the run: its launcher is then a claim."""
    if not proof:
        return False
    from flows.approvals.signing import check_launch
    from flows.config import ConfigError, approval_public_keys

    try:
        keys = approval_public_keys(settings)
    except ConfigError as exc:
        logger.warning("the launcher cannot be verified: %s", exc)
        return False
    refusal = check_launch(keys, playbook.metadata.name, incident, launched_by, proof, check_age=False)
    if refusal is None and not run_id:
        refusal = "the run's id is not known (no Prefect flow run), so the proof cannot be bound to one run"
    elif refusal is None and run_id:
        try:
            refusal = _bind_launch(run_id, playbook.metadata.name, incident, proof, now)
        except Exception as exc:  # Prefect unreachable or a bug: the run goes on, its launcher a claim
            refusal = f"the proof could not be bound to this run on the Prefect server ({type(exc).__name__})"
    if refusal is not None:
        logger.warning("The launch's proof is refused (%s); %s is taken as an unverified claim", refusal, launched_by)
    return refusal is None


def _bind_launch(run_id: str, playbook: str, incident: str, proof: str, now: float | None) -> str | None:
    """Why the (signature-checked) proof cannot be this run's, or None once it is: of the runs that recorded the
    proof's nonce, the one the server created first owns it. A run that recorded it before (a resume) keeps it
    whatever its age; two runs racing to record it are ordered by their creation, so both agree which one won."""
    import json

    from prefect.client.orchestration import get_client

    from flows.approvals.signing import launch_age_refusal, launch_time, nonce_of

    nonce = nonce_of(proof)
    with get_client(sync_client=True) as client:
        claims = _launch_claims(client, run_id, playbook, incident, nonce, proof)
        if run_id not in (owner for _, owner in claims):
            if claims:
                return f"the launch proof was already used by run {claims[0][1]}"
            too_old = launch_age_refusal(launch_time(proof) or 0, now)
            if too_old is not None:
                return too_old
            _record_claim(client, run_id, json.dumps({"nonce": nonce, "at": launch_time(proof)}))
            claims = _launch_claims(client, run_id, playbook, incident, nonce, proof)
    if run_id not in (owner for _, owner in claims):
        return "the proof's use by this run could not be recorded on the Prefect server"
    first = claims[0][1]
    return None if first == run_id else f"the launch proof was already used by run {first}"


def _record_claim(client: Any, run_id: str, value: str) -> None:
    from prefect.exceptions import ObjectAlreadyExists

    from flows.engine.journal import http_status

    try:
        client.create_flow_run_input(UUID(run_id), key=LAUNCH_CLAIM_KEY, value=value)
    except ObjectAlreadyExists:
        return  # recorded before: the first record stands, and is read back
    except Exception as exc:
        if http_status(exc) != 409:
            raise


def _launch_claims(
    client: Any, run_id: str, playbook: str, incident: str, nonce: str, proof: str
) -> list[tuple[datetime, str]]:
    """(the run's creation time, run id) of every run of this playbook and incident that recorded `nonce`, earliest
    first. A run is named after its incident, so the runs a proof for it could have started are found by that
    name; each claim is read by its exact key, and the runs are ordered by when the server created them (a copy of
    a proof is taken from a run that exists already, so the copy's run is the later one; a run made before the
    proof was signed does not count)."""
    import json

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName

    from flows.approvals.signing import LAUNCH_SKEW_SECONDS, launch_time
    from flows.engine.journal import read_input

    created: dict[str, datetime] = {}
    own = client.read_flow_run(UUID(run_id))
    created[str(own.id)] = own.created or datetime.max.replace(tzinfo=UTC)
    page, offset = 200, 0
    while True:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[playbook])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[incident])),
            limit=page,
            offset=offset,
        )
        created.update({str(run.id): run.created or datetime.max.replace(tzinfo=UTC) for run in runs})
        if len(runs) < page:
            break
        offset += page
    # A run made before the proof was signed cannot be the one it launched (a run's name and parameters can be
    # changed after it is made: a run prepared in advance must not win by its age).
    signed = datetime.fromtimestamp((launch_time(proof) or 0) - LAUNCH_SKEW_SECONDS, tz=UTC)
    claims: list[tuple[datetime, str]] = []
    for candidate, when in created.items():
        if when < signed:
            continue
        text = read_input(client, UUID(candidate), LAUNCH_CLAIM_KEY)
        try:
            value = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("nonce") == nonce:
            claims.append((when, candidate))
    return sorted(claims)


def run_tags(run: RunInfo) -> list[str]:
    return [
        "stanch",
        f"playbook:{run.playbook}",
        f"mode:{run.mode.value}",
        f"incident:{run.incident_id}",
        f"trigger:{run.trigger}",
        f"launcher:{'verified' if run.launcher_verified else 'claimed'}",
        *(["sandbox"] if run.sandbox else []),
    ]


def _tag_run(flow_run_id: UUID, run: RunInfo) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run_id).tags or []
        tags = sorted(set(current) | set(run_tags(run)))
        if tags != sorted(current):
            client.update_flow_run(flow_run_id, tags=tags)


def _summary_artifact(summary: RunSummary, logger: Any, masker: SecretMasker) -> None:
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(
            key="run-summary", markdown=masker.mask(summary.markdown()), description=masker.mask(summary.message[:200])
        )
    except Exception as exc:
        logger.warning("could not write the summary artifact: %s", exc)
