"""Count what a harness cluster's API server was asked, from its audit log (test harness only).

The API server writes one JSON line per request (policy level Metadata, cluster.py AUDIT_POLICY). The product
talks to the cluster through kind's kubeconfig, user `kubernetes-admin`; the harness's own programs use
`harness:components`; the real controllers use their own identities. So the requests of a playbook run are the
`kubernetes-admin` lines written while it ran: `mark` before, `count --since` after.

    python tests/harness/audit.py mark --log PATH                      # prints the log's size in bytes
    python tests/harness/audit.py count --log PATH --since BYTES [--user kubernetes-admin]
        # prints JSON: {"requests": N, "writes": N, "dry_run_writes": N,
        #               "write_requests": ["patch apps/deployments ns/name", ...]}

A write is a create, update, patch, delete or deletecollection that was not a dry run (dryRun=All persists
nothing and is counted apart). Watches are counted once, when they end or when the count is taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
PRODUCT_USER = "kubernetes-admin"


def mark(log: Path) -> int:
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0


def _describe(event: dict) -> str:
    ref = event.get("objectRef") or {}
    group = ref.get("apiGroup")
    resource = f"{group}/{ref.get('resource')}" if group else str(ref.get("resource"))
    where = "/".join(p for p in (ref.get("namespace"), ref.get("name")) if p)
    return f"{event.get('verb')} {resource} {where}".strip()


def count(log: Path, since: int = 0, user: str = PRODUCT_USER) -> dict:
    """The requests of `user` logged after byte offset `since` (each request once, by its audit ID)."""
    seen: dict[str, dict] = {}
    try:
        with log.open("rb") as handle:
            handle.seek(since)
            for raw in handle:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # a line still being written
                if (event.get("user") or {}).get("username") != user:
                    continue
                seen[event.get("auditID") or str(len(seen))] = event
    except FileNotFoundError:
        pass
    writes, dry_runs = [], 0
    for event in seen.values():
        if event.get("verb") not in WRITE_VERBS:
            continue
        if "dryRun=All" in (event.get("requestURI") or ""):
            dry_runs += 1
        else:
            writes.append(_describe(event))
    return {"requests": len(seen), "writes": len(writes), "dry_run_writes": dry_runs, "write_requests": writes}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("mark", "count"))
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--since", type=int, default=0)
    parser.add_argument("--user", default=PRODUCT_USER)
    args = parser.parse_args(argv)
    if args.action == "mark":
        print(mark(args.log))
    else:
        print(json.dumps(count(args.log, args.since, args.user)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
