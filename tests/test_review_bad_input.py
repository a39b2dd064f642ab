"""A log review never stops on a bad file or record: each is listed with its reason, the rest is reviewed."""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, STANCH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_playbooks import answer, start_flagship_on_health_alert

from flows.sandbox import trail
from integrations.aws import cloudtrail_review as engine

GOOD = FIXTURES / "cloudtrail" / "stratus-sts-federation-token.json"
BAD = FIXTURES / "cloudtrail" / "bad"
LEAKED = "AKIA6V1GNZTT65XQH36M"

# fixture -> (what it is, where the review says so, the reason's words). One failure each.
FILES = {
    "truncated-gzip-mentions-key.json.gz": ("file", "truncated gzip"),
    "truncated-gzip-no-key.json.gz": ("file", "truncated gzip"),
    "damaged-gzip.json.gz": ("file", "damaged gzip data"),
    "many-gzip-members-mentions-key.json.gz": ("file", "over 1000 gzip members"),
    "truncated-json-mentions-key.json": ("file", "not JSON: "),
    "records-null.json": ("file", "not a CloudTrail log file: Records is null"),
    "latin1-mentions-key.json": ("file", "not UTF-8 text (byte "),
    "nested-too-deep-mentions-key.json": ("file", "nested too deep"),
    "event-time-null.json": ("record", "eventTime is null"),
    "event-time-not-a-time.json": ("record", "eventTime 'yesterday' is not CloudTrail's time form"),
    "user-identity-string.json": ("record", "userIdentity is a string, not an object"),
    "records-not-objects.json": ("record", "the record is a string, not an object"),
}


def review_dir(root: Path, keys: tuple[str, ...] = (LEAKED,)) -> engine.Review:
    return engine.review(list(keys), scanner=engine.Scanner(engine.local_units(root), workers=2))


def test_every_bad_input_fixture_is_covered() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(FILES)


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_bad_file_is_listed_and_the_good_one_is_still_reviewed(tmp_path: Path, name: str) -> None:
    shutil.copy(GOOD, tmp_path / "good.json")
    shutil.copy(BAD / name, tmp_path / name)
    report = review_dir(tmp_path)
    assert report.events_total == 2, "the good file's two events"
    assert [d.access_key_id for d in report.derived_keys] == ["ASIASTJKC5GCM7ZE6LUP"]
    assert report.partial is True and report.files_scanned == 2
    kind, words = FILES[name]
    if kind == "file":
        [skipped] = report.files_skipped
        assert skipped.file == str(tmp_path / name) and words in skipped.reason, skipped
        assert report.files_skipped_total == 1 and report.records_skipped == []
    else:
        assert report.files_skipped == []
        assert report.records_skipped and all(r.file == str(tmp_path / name) for r in report.records_skipped)
        assert words in report.records_skipped[0].reason and report.records_skipped[0].index == 0
    json.dumps(report.to_json())  # the report stays serialisable whatever the input


def test_a_clean_review_is_not_partial() -> None:
    report = engine.review([LEAKED], scanner=engine.Scanner(engine.local_units(GOOD)))
    assert report.partial is False and report.files_skipped == [] and report.records_skipped == []
    assert report.to_json()["files_skipped_total"] == 0


def test_a_file_that_inflates_but_does_not_mention_the_key_is_not_judged(tmp_path: Path) -> None:
    shutil.copy(GOOD, tmp_path / "good.json")
    (tmp_path / "junk.json").write_bytes(b"{not json, and no key in it")
    with gzip.open(tmp_path / "junk.json.gz", "wb") as handle:
        handle.write(b"\xe9\xff not json either")
    report = review_dir(tmp_path)
    assert report.events_total == 2 and report.files_scanned == 3
    assert report.partial is False, "files without the key hold none of its events: they are not parsed"


def test_odd_fields_of_our_own_records_do_not_break_containment(tmp_path: Path) -> None:
    record = json.loads(GOOD.read_text())[0]
    odd = {
        **record,
        "eventID": "odd-1",
        "eventName": "CreateUser",
        "requestParameters": {"userName": {"not": "a name"}, "deep": json.loads("[" * 400 + "1" + "]" * 400)},
        "responseElements": {"credentials": ["AKIAAAAAAAAAAAAAAAAA"], "accessKey": "x"},
    }
    made = {
        **record,
        "eventID": "odd-2",
        "eventName": "GetSessionToken",
        "responseElements": {"credentials": {"accessKeyId": "user/admin", "sessionToken": "secret"}},
    }
    (tmp_path / "odd.json").write_text(json.dumps({"Records": [odd, made]}))
    report = review_dir(tmp_path)
    assert report.events_total == 2 and report.partial is False
    assert not [e for e in report.contain.principals if e.kind == "user"], "a user name that is not text is not a user"
    assert report.derived_keys == [], "only key ids are followed, never a made-up principal"
    [finding] = report.findings["persistence"]
    assert finding.event_id == "odd-1"


def test_an_unreadable_s3_object_is_listed(sandbox: Any) -> None:
    from test_actions_aws import make_ctx

    from integrations.aws import cloudtrail

    s3 = sandbox.client("s3")
    planted = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/planted.json.gz"
    s3.put_object(
        Bucket=sandbox.cloudtrail_bucket, Key=planted, Body=(BAD / "truncated-gzip-mentions-key.json.gz").read_bytes()
    )
    report = cloudtrail.review_key_activity(
        make_ctx(sandbox, False),
        access_key_ids=[sandbox.scenario["key"]],
        source=f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/",
    )
    assert report.events_total == 12, "the attack's events, from every other file"
    assert [(s.file, s.reason) for s in report.files_skipped] == [
        (f"s3://{sandbox.cloudtrail_bucket}/{planted}", "truncated gzip: the file ends before its compressed data does")
    ]
    assert report.partial


def run_cli(source: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [STANCH, "review-logs", "--source", str(source), "--access-key-id", LEAKED, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_review_logs_names_the_bad_file_and_exits_zero_when_the_rest_was_read(tmp_path: Path) -> None:
    shutil.copy(GOOD, tmp_path / "good.json")
    shutil.copy(BAD / "truncated-json-mentions-key.json", tmp_path / "planted.json")
    done = run_cli(tmp_path, "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["events_total"] == 2 and report["partial"] is True
    assert [s["file"] for s in report["files_skipped"]] == [str(tmp_path / "planted.json")]
    assert "1 file(s) and 0 record(s) could not be read" in done.stderr and "Traceback" not in done.stderr
    markdown = run_cli(tmp_path, "--format", "markdown")
    assert "**Partial review**" in markdown.stdout and "## Not read" in markdown.stdout
    assert "Not read (the review is partial)" in run_cli(tmp_path).stdout


def test_review_logs_exits_non_zero_when_nothing_could_be_read(tmp_path: Path) -> None:
    shutil.copy(BAD / "truncated-gzip-mentions-key.json.gz", tmp_path / "a.json.gz")
    shutil.copy(BAD / "latin1-mentions-key.json", tmp_path / "b.json")
    done = run_cli(tmp_path, "--format", "json")
    assert done.returncode == 1
    assert "none of the 2 file(s) could be read (first: " in done.stderr and "a.json.gz: truncated gzip" in done.stderr
    assert "Traceback" not in done.stderr and "JSONDecodeError" not in done.stderr
    assert json.loads(done.stdout)["files_skipped_total"] == 2, "the report still says what was tried"


def test_lookup_events_with_a_bad_record_lists_it() -> None:
    import boto3
    from botocore.stub import Stubber

    records = json.loads(GOOD.read_text())
    client = boto3.client("cloudtrail", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        base = {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": LEAKED}], "MaxResults": 50}
        good = {"EventId": "1", "CloudTrailEvent": json.dumps(records[0])}
        stub.add_response("lookup_events", {"Events": [{"EventId": "0", "CloudTrailEvent": "{trunc"}, good]}, base)
        derived = {**base, "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": "ASIASTJKC5GCM7ZE6LUP"}]}
        stub.add_response("lookup_events", {"Events": []}, derived)
        report = engine.review([LEAKED], lookup=client)
    assert report.events_total == 1 and report.partial
    [skipped] = report.records_skipped
    assert (skipped.file, skipped.index) == (f"LookupEvents:{LEAKED}", 0) and "not a JSON record" in skipped.reason


# ---------------------------------------------------------------- fuzzing

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | st.just(LEAKED),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_fields = ("eventID", "eventTime", "eventName", "eventSource", "awsRegion", "sourceIPAddress", "userAgent", "errorCode")
_records = st.fixed_dictionaries(
    {
        "userIdentity": st.one_of(
            _json_values, st.fixed_dictionaries({"accessKeyId": st.one_of(st.just(LEAKED), _json_values)})
        )
    },
    optional={
        **{name: _json_values for name in _fields},
        "eventTime": st.one_of(_json_values, st.just("2026-11-20T09:00:00Z")),
        "eventName": st.sampled_from(["CreateUser", "GetSessionToken", "CreateAccessKey", "AttachUserPolicy", "x"]),
        "requestParameters": _json_values,
        "responseElements": _json_values,
    },
)


def _check(report: engine.Review) -> None:
    text = json.dumps(report.to_json())
    assert report.partial == bool(report.files_skipped_total or report.records_skipped_total)
    assert json.loads(text)["schema"] == "stanch.review/v2"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_records, _json_values), max_size=6), st.integers(0, 400), st.booleans())
def test_fuzzed_records_and_truncations_never_stop_the_review(records: list[Any], cut: int, zipped: bool) -> None:
    body = json.dumps({"Records": records}).encode()
    data = gzip.compress(body, mtime=0) if zipped else body
    if cut:
        data = data[: max(0, len(data) - cut)]
    with tempfile.TemporaryDirectory() as root:
        shutil.copy(GOOD, Path(root) / "good.json")
        (Path(root) / "fuzzed.json.gz").write_bytes(data)
        report = review_dir(Path(root))
    _check(report)
    assert report.events_total >= 2, "the good file is always reviewed"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fuzzed_bytes_never_stop_the_review(noise: bytes, gzip_magic: bool) -> None:
    data = (b"\x1f\x8b\x08\x00" if gzip_magic else b"") + noise + LEAKED.encode()
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "fuzzed.json").write_bytes(data)
        report = review_dir(Path(root))
    _check(report)
    assert report.files_skipped_total == 1, "damaged gzip, or bytes that mention the key but are not JSON"


# ---------------------------------------------------------------- the planted file and the flagship


def test_a_planted_truncated_object_does_not_stop_the_flagship(sandbox: Any, prefect_api: str) -> None:
    key = sandbox.scenario["key"]
    records, _ = trail.attack_story(key, "ci-deployer", datetime(2026, 11, 20, 9, tzinfo=UTC))
    whole = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
    planted = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_planted.json.gz"
    sandbox.client("s3").put_object(Bucket=sandbox.cloudtrail_bucket, Key=planted, Body=whole[: len(whole) // 2])
    run = start_flagship_on_health_alert(sandbox)
    answer(run, "approve-containment")
    answer(run, "approve-secret-rotation")  # the narrow story reads prod/db/password
    summary = run.result(timeout=120)
    assert summary.state == "Completed", summary.message
    steps = {s.id: s for s in summary.steps}
    review = steps["review"].outputs
    assert review["partial"] is True
    assert review["files_skipped"] == [
        {
            "file": f"s3://{sandbox.cloudtrail_bucket}/{planted}",
            "reason": "truncated gzip: the file ends before its compressed data does",
        }
    ]
    users = [e["user_name"] for e in review["contain"]["principals"] if e["kind"] == "user"]
    assert users == [trail.BACKDOOR_USER], "the rest of the trail was still reviewed"
    done = ("quarantine-created-users", "disable-created-logins", "rotate-key-now")
    assert all(steps[s].state == "completed" for s in done), "a workload's confirmed-exposed key is rotated at once"
    assert steps["rotate-key"].state == "skipped"
    iam = sandbox.client("iam")
    assert iam.list_attached_user_policies(UserName=trail.BACKDOOR_USER)["AttachedPolicies"] == []
    # a partial review is said wherever its findings are acted on: the gate, the summary, the incident thread
    opened = next(d for k, d in run.history if k == "gate_opened" and d["gate"] == "approve-containment")
    assert "Note: review was partial: 1 file(s) and 0 record(s) could not be read" in opened["message"]
    assert "review was partial" in summary.message
    final = sandbox.slack.messages("stanch-incidents")[-1]["text"]
    assert "review was partial" in final and planted in final


def test_worker_processes_give_the_full_parses_report_and_leave_no_process(tmp_path: Path) -> None:
    """The fast path (byte search, identity-only decoding, worker processes) against the classic full parse on
    one thread, over good copies and every bad fixture at once."""
    import os

    from integrations.aws.cloudtrail_review.scanner import ClassicScanner

    for i in range(6):
        shutil.copy(GOOD, tmp_path / f"good-{i}.json")
    for bad in sorted(BAD.iterdir()):
        shutil.copy(bad, tmp_path / bad.name)

    def report(scanner: Any) -> dict[str, Any]:
        data = engine.review([LEAKED], scanner=scanner).model_dump(mode="json")
        data.pop("seconds", None)
        return data

    fast = report(engine.Scanner(engine.local_units(tmp_path), processes=True))
    classic = report(ClassicScanner(engine.local_units(tmp_path), workers=1))
    assert fast == classic
    assert fast["events_total"] and fast["files_skipped"], "the good copies were reviewed, the bad files listed"
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if b"fastscan" in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
    assert left == [], f"worker processes left behind: {left}"


def _fastscan_processes() -> list[str]:
    import os

    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if b"fastscan" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


@pytest.mark.parametrize("extra", [["--region"], ["--format", "nope"]], ids=["refused-by-typer", "refused-by-the-command"])
def test_a_refused_review_logs_command_leaves_no_early_worker(tmp_path: Path, extra: list[str]) -> None:
    """A directory large enough for worker processes starts them before the arguments are checked: a command
    that is then refused (by Typer, or by the command itself) ends them at once."""
    import os

    for index in range(4):  # 4 files, over 16 MB of gzip in all: the size the early start is for
        with gzip.open(tmp_path / f"f{index}.json.gz", "wb", compresslevel=1) as handle:
            handle.write(os.urandom(4_300_000))
    before = set(_fastscan_processes())
    command = [STANCH, "review-logs", "--source", str(tmp_path), "--access-key-id", LEAKED, *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert set(_fastscan_processes()) - before == set(), "no worker process outlives the refused command"


def test_a_file_of_many_gzip_members_costs_no_more_than_one_and_a_few_are_read(tmp_path: Path) -> None:
    """Concatenated gzip members are read (a few: every record of each), and a planted file of 200,000 members
    is refused quickly, in every scanner alike (each member once, never the rest of the file copied per member)."""
    import time

    from integrations.aws.cloudtrail_review.scanner import ClassicScanner

    text = GOOD.read_bytes()
    third = len(text) // 3
    parts = (text[:third], text[third : 2 * third], text[2 * third :])
    (tmp_path / "three-members.json.gz").write_bytes(b"".join(gzip.compress(part) for part in parts))
    planted = gzip.compress(b'{"Records":[') + gzip.compress(b" ") * 200_000 + gzip.compress(f"] {LEAKED}".encode())
    (tmp_path / "planted.json.gz").write_bytes(planted)
    reports = []
    for scanner in (
        ClassicScanner(engine.local_units(tmp_path), workers=1),
        engine.Scanner(engine.local_units(tmp_path), processes=False),
        engine.Scanner(engine.local_units(tmp_path), processes=True),
    ):
        started = time.monotonic()
        report = engine.review([LEAKED], scanner=scanner)
        assert time.monotonic() - started < 20, f"{type(scanner).__name__} took too long"
        assert report.events_total == 2 and report.bytes_scanned > len(text)
        [skipped] = report.files_skipped
        assert skipped.file.endswith("planted.json.gz") and "over 1000 gzip members" in skipped.reason
        reports.append({k: v for k, v in report.model_dump(mode="json").items() if k != "seconds"})
    assert reports[0] == reports[1] == reports[2]
