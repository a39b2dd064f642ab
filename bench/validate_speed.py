"""How long `stanch validate` takes on 50 playbooks, beside `python3 -c pass` and the import alone.

Run: make bench (or .venv/bin/python bench/validate_speed.py). Prints wall-clock medians of 5 runs.
Target: validating 50 playbooks well under half a second, without importing Prefect.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANCH = str(Path(sys.executable).with_name("stanch"))
RUNS = 5


def median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    source = ROOT / "playbooks" / "aws-access-key-compromise.yaml"
    folder = Path(tempfile.mkdtemp(prefix="stanch-bench-"))
    try:
        text = source.read_text()
        for i in range(50):
            (folder / f"pb{i:02d}.yaml").write_text(text.replace("aws-access-key-compromise", f"pb-{i:02d}"))
        rows = [
            ("python3 -c pass", median_seconds([sys.executable, "-c", "pass"])),
            ("import flows.language.validate", median_seconds([sys.executable, "-c", "import flows.language.validate"])),
            (
                "stanch validate (1 playbook)",
                median_seconds([STANCH, "validate", "-q", str(folder / "pb00.yaml")]),
            ),
            ("stanch validate (50 playbooks)", median_seconds([STANCH, "validate", "-q", str(folder)])),
            ("import prefect (for scale)", median_seconds([sys.executable, "-c", "import prefect"])),
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'command':<{width}}  median of {RUNS} (s)")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:.3f}")
    fifty, prefect = rows[3][1], rows[4][1]
    print(f"\n50 playbooks: {fifty:.3f} s ({'under' if fifty < 0.5 else 'OVER'} the 0.5 s target)")
    # Shared machines vary by tens of percent from hour to hour; `import prefect` is the yardstick that moves with them.
    print(f"50 playbooks take {fifty / prefect:.2f}x the time of `import prefect` on this machine right now")


if __name__ == "__main__":
    main()
