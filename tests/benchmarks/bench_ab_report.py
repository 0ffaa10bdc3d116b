"""Benchmark: parse a 1,000,000-row ab -g (gnuplot) file with parse_gnuplot and print how long it took.

Not a timing assertion; it prints numbers to compare across changes. The file is synthetic but has exactly ab's
format (header and tab-separated rows, a request every microsecond-ish over ~100 s) and is streamed from disk,
the way ab_load_test reads it.

    .venv/bin/python tests/benchmarks/bench_ab_report.py [ROWS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import parse_gnuplot  # noqa: E402

HEADER = "starttime\tseconds\tctime\tdtime\tttime\twait\n"
START = 1_795_500_000


def write_file(path: str, rows: int) -> None:
    per_second = max(1, rows // 100)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(HEADER)
        chunk = []
        for index in range(rows):
            second = START + index // per_second
            ttime = 5 + (index * 7919) % 400
            chunk.append(f"Tue Nov 24 09:00:00 2026\t{second}\t{index % 3}\t{ttime - 1}\t{ttime}\t{ttime - 2}\n")
            if len(chunk) == 10_000:
                handle.write("".join(chunk))
                chunk.clear()
        handle.write("".join(chunk))


def main(argv: list[str]) -> int:
    rows = int(argv[0]) if argv else 1_000_000
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "gnuplot.tsv")
        write_file(path, rows)
        size = os.path.getsize(path)
        best = None
        for _attempt in range(3):
            began = time.perf_counter()
            with open(path, encoding="utf-8") as handle:
                result = parse_gnuplot(handle)
            elapsed = time.perf_counter() - began
            best = elapsed if best is None else min(best, elapsed)
    if result["requests"] != rows:
        print(f"bench_ab_report: parsed {result['requests']} rows, expected {rows}", file=sys.stderr)
        return 1
    print(
        f"bench_ab_report: parse_gnuplot of {rows:,} rows ({size / 1e6:.1f} MB, {result['duration_s']} s of load): "
        f"best of 3 {best:.2f} s ({rows / best:,.0f} rows/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
