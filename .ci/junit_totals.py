"""Print one line with the test totals of pytest's JUnit XML reports.

Usage: ``python3 .ci/junit_totals.py REPORT.xml...`` prints ``tests: N passed, N failed,
N skipped`` (errors count as failed). Missing or unreadable reports are named on stderr and
count as nothing; the exit status is always 0 (``.ci/run`` decides success from the steps).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def totals(paths: list[str]) -> tuple[int, int, int]:
    """Return (passed, failed, skipped) summed over the reports at ``paths``."""
    passed = failed = skipped = 0
    for name in paths:
        path = Path(name)
        if not path.is_file():
            print(f"junit totals: no report {path} (that leg did not finish)", file=sys.stderr)
            continue
        try:
            # Our own pytest output, not untrusted input.
            root = ET.parse(path).getroot()  # noqa: S314
        except ET.ParseError as error:
            print(f"junit totals: cannot read {path}: {error}", file=sys.stderr)
            continue
        for case in root.iter("testcase"):
            tags = {child.tag for child in case}
            if tags & {"failure", "error"}:
                failed += 1
            elif "skipped" in tags:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main(argv: list[str]) -> int:
    """Print the totals line for the reports named in ``argv``."""
    passed, failed, skipped = totals(argv)
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
