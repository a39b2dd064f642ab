"""The embedded sandbox: simulated AWS (moto's server on a free loopback port) and Slack (a local stand-in).

No cloud account, no network beyond loopback. `Sandbox().start()` serves both, seeds them from a YAML
fixture and points this process at them (environment variables read by the Stanch configuration).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.sandbox.slack_api import SlackStandIn
from flows.sandbox.vendor_api import VendorStandIn

FIXTURE = Path(__file__).with_name("fixture.yaml")
ACCOUNT_ID = "123456789012"


class _MotoProcess:
    """moto's server in a child process on a free loopback port."""

    def start(self) -> _MotoProcess:
        import socket
        import subprocess
        import sys
        import time
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOTO_RECORDER_FILEPATH": _recording_file()},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=1):  # noqa: S310
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto's server did not start within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


_EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def flagship_without_review(bucket: str = "stanch-sandbox-cloudtrail") -> str:
    """The flagship as shipped, triggers included, with each trigger's run reviewing the sandbox's trail from a
    time after every event: for tests and benches of what surrounds the review (alert intake, latency), not of it."""
    from flows.language.validate import PLAYBOOK_DIR

    text = (PLAYBOOK_DIR / "aws-access-key-compromise.yaml").read_text(encoding="utf-8")
    head, triggers, rest = text.partition("\ntriggers:\n")
    block, approvers, tail = rest.partition("\napprovers:\n")
    extra = f'      trail_source: s3://{bucket}/AWSLogs/\n      review_since: "2099-01-01"\n'
    return head + triggers + block.replace("    inputs:\n", "    inputs:\n" + extra) + approvers + tail


def _recording_file() -> str:
    """Where moto's request recorder writes (never the working directory)."""
    import tempfile

    handle, path = tempfile.mkstemp(prefix="stanch-moto-recording-")
    os.close(handle)
    return path


def _operation(entry: dict[str, Any]) -> str:
    """`service:Operation` of one recorded AWS request (query, JSON and REST protocols)."""
    import base64
    from urllib.parse import parse_qs, urlparse

    headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
    scope = headers.get("authorization", "").split("Credential=")[-1].split("/")
    service = scope[3] if len(scope) > 3 else "aws"
    target = headers.get("x-amz-target")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    action = parse_qs(body).get("Action") or parse_qs(urlparse(entry.get("url", "")).query).get("Action")
    if action:
        return f"{service}:{action[0]}"
    return f"{service}:{entry.get('method', 'GET')} {urlparse(entry.get('url', '')).path}"


def is_mutating(operation: str) -> bool:
    """Whether a recorded `service:Operation` changes anything (REST: any method but GET and HEAD)."""
    from integrations.context import is_read_only_operation

    name = operation.split(":", 1)[1]
    if " " in name:
        return name.split(" ", 1)[0] not in ("GET", "HEAD")
    return not is_read_only_operation(name)


def _approval_pair() -> tuple[str, str]:
    """(private, public): a new pair, unless the environment names the service's public key already (a runner
    beside a `stanch serve` of its own holds only that; the private key stays with the service)."""
    public = os.environ.get("STANCH_APPROVAL_PUBLIC_KEY")
    if public:
        return os.environ.get("STANCH_APPROVAL_PRIVATE_KEY", ""), public
    from flows.approvals.signing import generate

    return generate()


def _env_or_random(name: str, size: int) -> str:
    import secrets

    return os.environ.get(name) or secrets.token_hex(size)


def datetime_of(stamp: str) -> Any:
    from datetime import UTC, datetime

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass
class Sandbox:
    fixture: Path = FIXTURE
    region: str = "us-east-1"
    aws_endpoint: str = ""
    slack: SlackStandIn | None = None
    vendor: VendorStandIn | None = None
    keys: dict[str, list[str]] = field(default_factory=dict)
    cloudtrail_bucket: str | None = None
    # Taken from the environment when set, so `stanch serve` in another terminal can share them.
    slack_signing_secret: str = field(default_factory=lambda: _env_or_random("STANCH_SLACK_SIGNING_SECRET", 16))
    # The approval service's key pair, made afresh (or taken from the environment, so `stanch serve` in another
    # terminal shares it): the sandbox's demo approver signs with the private key like the service does.
    approval_keys: tuple[str, str] = field(default_factory=lambda: _approval_pair())
    scenario: dict[str, str] = field(default_factory=dict)
    separate_process: bool = False  # serve moto from its own process (loads that share one GIL badly)
    _moto: Any = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def start(self) -> Sandbox:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log is noise here
        spec = self._spec()
        self.region = spec.get("region", self.region)
        if self.separate_process:
            self._moto = _MotoProcess().start()
            self.aws_endpoint = self._moto.endpoint
        else:
            from moto.moto_api import recorder

            recorder._location = _recording_file()
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.aws_endpoint = f"http://{host}:{port}"
        self.slack = SlackStandIn(channels=tuple(spec.get("slack", {}).get("channels", ()))).start()
        self.vendor = VendorStandIn().start()
        self.activate()
        self.seed(spec)
        return self

    def stop(self) -> None:
        self.deactivate()
        if self.slack is not None:
            self.slack.stop()
        if self.vendor is not None:
            self.vendor.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """The variables that point Stanch and boto3 at the sandbox (no real credential among them)."""
        if self.slack is None:
            raise RuntimeError("start() the sandbox first")
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "STANCH_AWS__ENDPOINT_URL": self.aws_endpoint,
            "STANCH_AWS__REGION": self.region,
            "STANCH_AWS__ROLE_ARN": "",
            "STANCH_SLACK__BASE_URL": self.slack.base_url,
            "STANCH_SANDBOX_SLACK_TOKEN": self.slack.token,
            "STANCH_SLACK__TOKEN": '{"env": "STANCH_SANDBOX_SLACK_TOKEN"}',
            "STANCH_SANDBOX_VENDOR_URL": self.vendor.base_url if self.vendor else "",
            **({"STANCH_APPROVAL_PRIVATE_KEY": self.approval_keys[0]} if self.approval_keys[0] else {}),
            "STANCH_APPROVAL_PUBLIC_KEY": self.approval_keys[1],
            "STANCH_SLACK_SIGNING_SECRET": self.slack_signing_secret,
            "STANCH_SLACK__INCIDENT_CHANNEL": "#stanch-incidents",
        }

    def activate(self) -> None:
        for key, value in self.environ().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def deactivate(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=self.region,
            endpoint_url=self.aws_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's placeholder
        )

    def reset(self) -> None:
        """Empty the simulated account and Slack, then seed them again."""
        import urllib.request

        request = urllib.request.Request(f"{self.aws_endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback moto only
            response.read()
        if self.slack is not None:
            self.slack.reset()
        if self.vendor is not None:
            self.vendor.reset()
        self.keys.clear()
        self.seed(self._spec())

    def _moto_api(self, path: str, method: str = "POST") -> str:
        import urllib.request

        request = urllib.request.Request(f"{self.aws_endpoint}/moto-api/{path}", method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback moto only
            return str(response.read().decode())

    def record_aws(self) -> None:
        """Start moto's request log afresh: every AWS request from now on is kept (see `aws_operations`)."""
        self._moto_api("recorder/reset-recording")
        self._moto_api("recorder/start-recording")

    def aws_operations(self) -> list[str]:
        """Every AWS request since `record_aws`, as `service:Operation`, in order."""
        import json

        text = self._moto_api("recorder/download-recording", method="GET")
        return [_operation(json.loads(line)) for line in text.splitlines() if line.strip()]

    def _spec(self) -> dict[str, Any]:
        return yaml.safe_load(Path(self.fixture).read_text(encoding="utf-8")) or {}

    def seed(self, spec: dict[str, Any]) -> None:
        import json

        iam = self.client("iam")
        for user in spec.get("users", []):
            tags = [{"Key": k, "Value": str(v)} for k, v in (user.get("tags") or {}).items()]
            iam.create_user(UserName=user["name"], Tags=tags)
            self.keys[user["name"]] = []
            for n in range(int(user.get("keys", 0))):
                created = iam.create_access_key(UserName=user["name"])["AccessKey"]
                self.keys[user["name"]].append(created["AccessKeyId"])
                if n == 0 and user.get("secret"):  # a workload's key lives in Secrets Manager...
                    pair = {"AccessKeyId": created["AccessKeyId"], "SecretAccessKey": created["SecretAccessKey"]}
                    self.client("secretsmanager").create_secret(
                        Name=user["secret"], SecretString=json.dumps(pair), Tags=[{"Key": "workload", "Value": user["name"]}]
                    )
                # ...and nowhere else: the sandbox keeps no secret key
        if spec.get("secrets"):
            sm = self.client("secretsmanager")
            for secret in spec["secrets"]:
                tags = [{"Key": k, "Value": str(v)} for k, v in (secret.get("tags") or {}).items()]
                sm.create_secret(Name=secret["name"], SecretString=secret["value"], Tags=tags)
        for vendor in spec.get("vendors", []):
            self.seed_vendor(vendor["name"], vendor["prefix"], vendor.get("keys", []), vendor.get("manual", []))
        trail = spec.get("cloudtrail")
        if trail:
            self._seed_cloudtrail(trail["bucket"], [Path(self.fixture).parent / f for f in trail.get("files", [])])
            if trail.get("scenario"):
                self._seed_scenario(trail["bucket"], **trail["scenario"])
        if self.slack is not None:
            for name in spec.get("slack", {}).get("channels", []):
                self.slack.add_channel(name)

    def seed_vendor(self, vendor: str, prefix: str, names: list[str], manual: tuple[str, ...] | list[str] = ()) -> None:
        """One secret per vendor key, minted by the vendor stand-in, plus the admin token's secret."""
        import json
        from concurrent.futures import ThreadPoolExecutor

        if self.vendor is None:
            raise RuntimeError("start() the sandbox first")
        sm = self.client("secretsmanager")
        sm.create_secret(
            Name=f"{prefix}admin-token",
            SecretString=self.vendor.admin_token,
            Tags=[{"Key": "role", "Value": "vendor-admin"}],
        )

        def one(name: str) -> None:
            key = self.vendor.mint(name)  # type: ignore[union-attr]
            tags = [{"Key": "vendor", "Value": vendor}]
            if name in manual:
                tags.append({"Key": "rotation", "Value": "manual"})
            sm.create_secret(
                Name=f"{prefix}{name}",
                SecretString=json.dumps({"api_key": key.api_key, "key_id": key.key_id}),
                Tags=tags,
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, names))

    def vendor_urls(self) -> dict[str, str]:
        """The `with` arguments that point rotate_vendor_secret at the vendor stand-in."""
        if self.vendor is None:
            raise RuntimeError("start() the sandbox first")
        base = self.vendor.base_url
        return {
            "mint_url": f"{base}/v1/keys",
            "revoke_url": f"{base}/v1/keys/{{key_id}}/revoke",
            "check_url": f"{base}/v1/check",
        }

    def _seed_cloudtrail(self, bucket: str, files: list[Path]) -> None:
        """Put CloudTrail-format files in S3 under AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/."""
        import gzip
        import json
        from datetime import datetime

        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        self.cloudtrail_bucket = bucket
        for n, file in enumerate(files):
            data = json.loads(file.read_text(encoding="utf-8"))
            records = data["Records"] if isinstance(data, dict) else data
            first = datetime.strptime(records[0]["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
            region = records[0].get("awsRegion", self.region)
            key = (
                f"AWSLogs/{ACCOUNT_ID}/CloudTrail/{region}/{first:%Y/%m/%d}/"
                f"{ACCOUNT_ID}_CloudTrail_{region}_{first:%Y%m%dT%H%MZ}_sandbox{n:04d}.json.gz"
            )
            body = gzip.compress(json.dumps({"Records": records}).encode())
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    def _seed_scenario(self, bucket: str, user: str, hours_ago: int = 3, noise: int = 1000, role: str = "") -> None:
        """A leaked key's misuse among ordinary traffic, in the trail; its backdoor user exists in IAM."""
        import gzip
        import json
        from datetime import timedelta

        from flows.sandbox import trail

        iam = self.client("iam")
        iam.create_user(UserName=trail.BACKDOOR_USER)
        backdoor = iam.create_access_key(UserName=trail.BACKDOOR_USER)["AccessKey"]["AccessKeyId"]
        iam.create_login_profile(UserName=trail.BACKDOOR_USER, Password="Sandbox-Backdoor-Passw0rd!")  # noqa: S106
        policy = iam.create_policy(
            PolicyName=trail.BACKDOOR_POLICY,
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )["Policy"]["Arn"]
        iam.attach_user_policy(UserName=trail.BACKDOOR_USER, PolicyArn=policy)
        self.keys[trail.BACKDOOR_USER] = [backdoor]
        start = trail.now_hour() - timedelta(hours=hours_ago)
        story, made = trail.attack_story(self.keys[user][0], user, start + timedelta(minutes=7), backdoor_key=backdoor)
        self.scenario = {"user": user, "key": self.keys[user][0], **made}
        if role:
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(_EC2_TRUST))
            story += trail.role_story(role, start + timedelta(minutes=50))
            self.scenario["role"] = role
        records = sorted(story + trail.noise(noise, start, timedelta(hours=hours_ago + 1)), key=lambda r: r["eventTime"])
        s3 = self.client("s3")
        by_slot: dict[Any, list[dict[str, Any]]] = {}
        for item in records:  # one file per quarter hour, as CloudTrail delivers them
            at = datetime_of(item["eventTime"])
            by_slot.setdefault(at.replace(minute=at.minute - at.minute % 15, second=0), []).append(item)
        for n, (slot, batch) in enumerate(sorted(by_slot.items())):
            body = gzip.compress(json.dumps({"Records": batch}).encode())
            s3.put_object(Bucket=bucket, Key=trail.object_key(slot, n=n), Body=body)

    def seed_wide_attack(self, bucket: str = "stanch-sandbox-cloudtrail") -> dict[str, str]:
        """The attack's wider part (trail.wide_attack_story): the resources it changed, as it left them, and its
        records in the trail, two hours ago. Needs the scenario (its key, session key and role). The ids made.

        Every category of a review's `contain` has an entry, some undone by the attacker before the alert; the
        leaked key's user ends with two keys (the second is the attacker's). `stanch demo` tells this story."""
        import gzip
        import io
        import json
        import zipfile
        from datetime import timedelta

        from flows.sandbox import trail

        iam, ec2 = self.client("iam"), self.client("ec2")
        outside = trail.OUTSIDE_ACCOUNT
        role = self.scenario.get("role") or "app-deployer"
        ids = {"role": role, "group_name": "ops-admins", "bucket": "customer-exports", "trail": "main"}
        ids["function"], ids["db_snapshot"] = "exporter", "orders-snap"
        iam.create_group(GroupName=ids["group_name"])
        iam.add_user_to_group(GroupName=ids["group_name"], UserName="alice")
        iam.put_user_policy(
            UserName="alice",
            PolicyName="alice-escalate",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        ids["mfa_serial"] = iam.create_virtual_mfa_device(VirtualMFADeviceName="ops")["VirtualMFADevice"]["SerialNumber"]
        iam.enable_mfa_device(
            UserName=trail.BACKDOOR_USER,
            SerialNumber=ids["mfa_serial"],
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        attacker_trust = trail.trust_document({"AWS": f"arn:aws:iam::{outside}:root"})
        iam.create_role(RoleName="svc-escalation", AssumeRolePolicyDocument=attacker_trust)
        if not any(r["RoleName"] == role for r in iam.list_roles()["Roles"]):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(_EC2_TRUST))
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=attacker_trust)
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        ids["group"] = ec2.create_security_group(GroupName="web-public", Description="web", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=ids["group"],
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        )
        volume = ec2.create_volume(AvailabilityZone=f"{self.region}a", Size=1)["VolumeId"]
        ids["snapshot"] = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
        ec2.modify_snapshot_attribute(
            SnapshotId=ids["snapshot"], Attribute="createVolumePermission", OperationType="add", UserIds=[outside]
        )
        rds = self.client("rds")
        rds.create_db_instance(
            DBInstanceIdentifier="orders",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            MasterUsername="orders",
            MasterUserPassword="sandbox-only-pass",
            AllocatedStorage=20,
        )
        rds.create_db_snapshot(DBInstanceIdentifier="orders", DBSnapshotIdentifier=ids["db_snapshot"])
        rds.modify_db_snapshot_attribute(
            DBSnapshotIdentifier=ids["db_snapshot"], AttributeName="restore", ValuesToAdd=[outside]
        )
        s3 = self.client("s3")
        s3.create_bucket(Bucket=ids["bucket"])
        objects = f"arn:aws:s3:::{ids['bucket']}/*"
        statements = [
            {"Sid": "Pipeline", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:role/etl"},
             "Action": "s3:PutObject", "Resource": objects},
            {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": objects},
        ]  # fmt: skip
        s3.put_bucket_policy(Bucket=ids["bucket"], Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return 1\n")
        function_role = iam.create_role(RoleName="exporter-fn", AssumeRolePolicyDocument=json.dumps(_EC2_TRUST))["Role"]
        lam = self.client("lambda")
        lam.create_function(
            FunctionName=ids["function"],
            Runtime="python3.11",
            Role=function_role["Arn"],
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )
        lam.add_permission(FunctionName=ids["function"], StatementId="ops", Action="lambda:InvokeFunction", Principal="*")
        lam.create_function(  # the attacker's own function: it still stands
            FunctionName="ops-sync",
            Runtime="python3.11",
            Role=function_role["Arn"],
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )
        ids["created_function"] = "ops-sync"
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"]
        ids["instance"] = launched[0]["InstanceId"]  # launched by the attacker and still running
        target = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"]
        ids["ssm_target"] = target[0]["InstanceId"]  # the account's own instance the attacker ran a command on
        guardduty = self.client("guardduty")
        ids["detector"] = guardduty.create_detector(Enable=True)["DetectorId"]
        guardduty.update_detector(DetectorId=ids["detector"], Enable=False)
        config = self.client("config")
        s3.create_bucket(Bucket="config-history")
        config.put_configuration_recorder(
            ConfigurationRecorder={"name": "default", "roleARN": f"arn:aws:iam::{ACCOUNT_ID}:role/config-recorder"}
        )
        config.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": "config-history"})
        config.start_configuration_recorder(ConfigurationRecorderName="default")
        config.stop_configuration_recorder(ConfigurationRecorderName="default")
        ids["recorder"] = "default"
        # A second key for the leaked key's own user: the attacker's, so the user holds two keys at the alert.
        ids["attacker_key"] = iam.create_access_key(UserName=self.scenario["user"])["AccessKey"]["AccessKeyId"]
        self.keys[self.scenario["user"]].append(ids["attacker_key"])
        s3.create_bucket(Bucket="org-trail")
        cloudtrail = self.client("cloudtrail")
        cloudtrail.create_trail(Name=ids["trail"], S3BucketName="org-trail")
        cloudtrail.put_event_selectors(
            TrailName=ids["trail"], EventSelectors=[{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": False}]
        )
        start = trail.now_hour() - timedelta(hours=2)
        records = trail.wide_attack_story(
            self.scenario["key"], self.scenario["session_key"], self.scenario["user"], start, ids
        )
        body = gzip.compress(json.dumps({"Records": records}).encode())
        s3.put_object(Bucket=bucket, Key=trail.object_key(start, n=9999), Body=body)
        return ids

    def snapshot(self) -> dict[str, str]:
        """A readable picture of the simulated account: keys, per-user policies and logins, secret versions."""
        iam = self.client("iam")
        state = {f"key {k}": v for k, v in self.key_states().items()}
        for page in iam.get_paginator("list_users").paginate():
            for user in page["Users"]:
                name = user["UserName"]
                inline = iam.list_user_policies(UserName=name)["PolicyNames"]
                attached = [p["PolicyName"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]]
                try:
                    iam.get_login_profile(UserName=name)
                    login = "console login"
                except iam.exceptions.NoSuchEntityException:
                    login = "no console login"
                state[f"user {name}"] = "; ".join(
                    [login, f"inline: {', '.join(inline) or '-'}", f"attached: {', '.join(attached) or '-'}"]
                )
        for page in iam.get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                inline = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
                state[f"role {role['RoleName']}"] = f"inline: {', '.join(inline) or '-'}"
        sm = self.client("secretsmanager")
        for page in sm.get_paginator("list_secrets").paginate():
            for secret in page["SecretList"]:
                versions = sm.describe_secret(SecretId=secret["ARN"]).get("VersionIdsToStages", {})
                current = next((v for v, s in versions.items() if "AWSCURRENT" in s), "")
                state[f"secret {secret['Name']}"] = f"{len(versions)} version(s), current {current[:8]}"
        return state

    def key_states(self) -> dict[str, str]:
        """Every access key's status in the simulated account: {key id: 'user: Active'}."""
        iam = self.client("iam")
        states = {}
        for page in iam.get_paginator("list_users").paginate():
            for user in page["Users"]:
                for key in iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]:
                    states[key["AccessKeyId"]] = f"{user['UserName']}: {key['Status']}"
        return states
