"""Run every example as its own process (CI runs this); fail on the first that fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name == "run_all.py" or script.name.startswith("_"):
            continue  # the runner itself and modules shared by examples
        print(f"== {script.name}", flush=True)
        result = subprocess.run([sys.executable, str(script)], timeout=120)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed examples: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
