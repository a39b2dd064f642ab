"""The CloudTrail review engine: what did a set of keys (and the credentials they made) do?

`sources` lists log files (local, S3) or pages LookupEvents; `scanner` finds the records made by the keys,
following derived credentials in one time-ordered pass; `analysis` turns them into findings and what to
contain; `report` is the JSON shape. The action `aws.cloudtrail.review_key_activity` and `stanch review-logs`
are thin layers on top.
"""

from integrations.aws.cloudtrail_review.analysis import analyse, derivations, review
from integrations.aws.cloudtrail_review.report import SCHEMA, Review
from integrations.aws.cloudtrail_review.scanner import Scanner, scanner_for
from integrations.aws.cloudtrail_review.sources import Unit, local_units, normalize_time, s3_units, write_corpus_file

__all__ = [
    "SCHEMA",
    "Review",
    "Scanner",
    "Unit",
    "analyse",
    "derivations",
    "local_units",
    "normalize_time",
    "review",
    "s3_units",
    "scanner_for",
    "write_corpus_file",
]
