"""Property-based tests: whatever an alert holds, it becomes facts or an AlertError naming the place, quickly.

`make test` runs a few hundred derandomized examples; `make fuzz` (STANCH_FUZZ_EXAMPLES=10000, random) a long run.
Each failure found is kept as a fixture in tests/fixtures/alerts/bad/ with its message in test_alerts.EXPECTED.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import time
from typing import Any

from conftest import FIXTURES, json_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.alerts import FACT_KEYS, AlertError, normalize, parse_alert
from integrations.masking import looks_secret

EXAMPLES = int(os.environ.get("STANCH_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=EXAMPLES is None,
    deadline=None,  # timed by the test itself (5 s)
    database=None,
    suppress_health_check=list(HealthCheck),
)
LIMIT_SECONDS = 5.0
SAMPLES = [json.loads(p.read_text()) for p in sorted((FIXTURES / "alerts").glob("*.json"))]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws.health", "\ud800"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@st.composite
def mutated_alerts(draw: st.DrawFn) -> Any:
    """A real-format alert with values replaced, keys dropped, or a deep value grafted in."""
    alert = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(json_paths(alert)))
        op = draw(st.sampled_from(["replace", "drop", "deep"]))
        if not path:
            alert = draw(json_values) if op == "replace" else alert
            continue
        parent = alert
        for part in path[:-1]:
            parent = parent[part]
        if op == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "deep":
            depth = draw(st.integers(20, 200))
            parent[path[-1]] = json.loads("[" * depth + "1" + "]" * depth)
        else:
            parent[path[-1]] = draw(json_values)
        if not isinstance(alert, dict | list):
            break
    return alert


def check_alert(raw: Any) -> None:
    start = time.perf_counter()
    try:
        facts = normalize(raw)
    except AlertError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 2_000
    else:
        assert tuple(facts) == FACT_KEYS
        assert isinstance(facts["access_key_ids"], list) and isinstance(facts["confirmed"], bool)
        assert all(isinstance(k, str) for k in facts["access_key_ids"])
        assert facts["access_key_id"] in (facts["access_key_ids"] or [None])
        for name in ("kind", "source"):
            assert isinstance(facts[name], str)
        assert not looks_secret(json.dumps(facts, default=str))
        json.dumps(facts).encode("utf-8")  # storable and printable: no lone surrogates
    assert time.perf_counter() - start < LIMIT_SECONDS


@given(mutated_alerts())
@FUZZ
def test_mutated_real_alerts_become_facts_or_an_error_naming_the_field(raw: Any) -> None:
    check_alert(raw)


@given(json_values)
@FUZZ
def test_any_json_value_becomes_facts_or_an_error(raw: Any) -> None:
    check_alert(raw)


@given(st.text(max_size=200) | st.binary(max_size=200))
@FUZZ
def test_any_alert_body_parses_or_is_refused_with_a_reason(body: str | bytes) -> None:
    try:
        raw = parse_alert(body)
    except AlertError as exc:
        assert str(exc)
        return
    check_alert(raw)


def test_peak_memory_of_the_alert_fuzzing_is_bounded() -> None:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS after the alert fuzzing: {peak_mb:.0f} MB")
    assert peak_mb < 1_024
