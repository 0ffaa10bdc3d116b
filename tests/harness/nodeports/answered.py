"""Which checks the node-port stand-ins answered, from the log of the stand-in kind's node-port server.

The stand-ins play containers that cannot run here (filewcount on 30080, Grafana and Prometheus on 30081, the git
server on 30082). Each request they answered is one line of <STANDIN_STATE_DIR>/kind/clusters/<cluster>.nodeports.log
(`np-<port>: <client> - - [<time>] "<METHOD> <path> HTTP/1.1" <status> -`); this prints one line per node port,
method, path (without its query) and status, with how many times, so a test run says what a stand-in answered.

    python tests/harness/nodeports/answered.py LOG
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

LINE = re.compile(r'^np-(\d+): .*?"([A-Z]+) ([^ ?"]+)[^"]*" (\d{3})')
WHAT = {"30080": "filewcount stand-in", "30081": "Grafana/Prometheus stand-in", "30082": "git server stand-in"}


def summarize(text: str) -> list[str]:
    counts = Counter(m.groups() for m in map(LINE.match, text.splitlines()) if m)
    return [
        f"NodePort {port} ({WHAT.get(port, 'stand-in')}): {method} {path} -> {status} x{n}"
        for (port, method, path, status), n in sorted(counts.items())
    ]


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    lines = summarize(path.read_text(encoding="utf-8", errors="replace")) if path.exists() else []
    print("\n".join(lines) if lines else f"No request reached a node-port stand-in ({path}).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
