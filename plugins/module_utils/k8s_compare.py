# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the cluster already holds what a manifest says, so an unchanged object is never written again.

kubernetes.core.k8s with state=present sends a PATCH for an object that exists, even when nothing differs, and
only then compares. An idempotent re-run must send no write request, so the roles read first and apply only the
manifests that ``drifted`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def contains(live: Any, desired: Any) -> bool:
    """True when every field the manifest sets has that value in the live object.

    Fields the API server added (defaults, status, metadata it manages) are ignored; lists must have the same
    length and contain item by item, as the API server keeps a manifest's list order.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return desired == live
    return str(desired) == str(live)


def drifted(desired: Iterable[Mapping[str, Any]], live: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The manifests of ``desired`` that the cluster lacks or holds with other values.

    ``live`` is aligned with ``desired``: for each manifest, what the cluster returned for it (the object, a list
    holding it, as kubernetes.core.k8s_info's ``resources``, or None / an empty list when it does not exist).
    """
    desired, live = list(desired), list(live)
    if len(desired) != len(live):
        raise ValueError(f"k8s_drifted needs one live entry per manifest, got {len(live)} for {len(desired)}")
    out = []
    for index, manifest in enumerate(desired):
        found = live[index]
        current = (found[0] if found else None) if isinstance(found, list) else found
        if current is None or not contains(current, manifest):
            out.append(manifest)
    return out
