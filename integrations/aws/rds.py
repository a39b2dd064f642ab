"""RDS actions: take back a DB snapshot share an attacker made."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws import error_code
from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action


def _restorers(client: Any, snapshot: str) -> set[str]:
    try:
        found = client.describe_db_snapshot_attributes(DBSnapshotIdentifier=snapshot)["DBSnapshotAttributesResult"]
    except Exception as exc:
        if error_code(exc) == "DBSnapshotNotFound":  # deleted: shared with nobody
            return set()
        raise
    return {v for a in found["DBSnapshotAttributes"] if a["AttributeName"] == "restore" for v in a["AttributeValues"]}


@action(
    "aws.rds.unshare_db_snapshot",
    mutates=True,
    permissions=["rds:DescribeDBSnapshotAttributes", "rds:ModifyDBSnapshotAttribute"],
    calls=["rds:DescribeDBSnapshotAttributes", "rds:ModifyDBSnapshotAttribute"],
)
def unshare_db_snapshot(
    ctx: ActionContext,
    db_snapshot_id: Annotated[
        str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_:-]{0,254}$", description="The DB snapshot identifier.")
    ],
    accounts: Annotated[
        list[Annotated[str, Field(pattern=r"^(\d{12}|all)$")]],
        Field(min_length=1, description="Account ids (or `all`, the public) to remove from the restore list."),
    ],
    region: Annotated[str | None, Field(description="The snapshot's region; the configured one when omitted.")] = None,
) -> Reverted:
    """Remove accounts (or the public) from a DB snapshot's restore permission.

    A lost answer: the attribute is read again; none of the accounts left means done.
    """
    client = ctx.aws.client("rds", region)
    wanted = set(accounts)
    still = sorted(_restorers(client, db_snapshot_id) & wanted)
    return converge(
        ctx,
        f"{db_snapshot_id}:{','.join(sorted(wanted))}",
        lambda: bool(_restorers(client, db_snapshot_id) & wanted),
        lambda: client.modify_db_snapshot_attribute(
            DBSnapshotIdentifier=db_snapshot_id, AttributeName="restore", ValuesToRemove=still
        ),
        f"remove the share of DB snapshot {db_snapshot_id} with {', '.join(still) or 'nobody'}",
        gone_codes=("DBSnapshotNotFound",),
    )
