#!/usr/bin/env python3
"""Write docs/job.schema.json and docs/metrics.schema.json from the pydantic models.

`make schemas` runs this; tests/unit/test_docs.py fails when the files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trainhub.job import Job
from trainhub.metrics.rows import ROW_ADAPTER

DOCS = Path(__file__).resolve().parent.parent / "docs"


def schemas() -> dict[str, str]:
    return {
        "job.schema.json": json.dumps(Job.model_json_schema(), indent=2) + "\n",
        "metrics.schema.json": json.dumps(ROW_ADAPTER.json_schema(by_alias=True), indent=2) + "\n",
    }


def main() -> int:
    for name, text in schemas().items():
        (DOCS / name).write_text(text)
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
