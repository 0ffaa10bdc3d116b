#!/usr/bin/env bash
# Fill a schema directory with the pinned upstream definitions the manifest suite (tests/manifests)
# validates kube/ against, on a machine with internet access:  make schemas
#   (or: bash scripts/fetch-schemas.sh DIR; default $FILEWCOUNT_SCHEMAS_DIR, else ../shared/schemas)
#
# Layout written (the same as ../shared/schemas, see its README.md):
#   DIR/crds/<group>_<plural>.yaml                      CRDs, byte-for-byte from the upstream tags below
#   DIR/charts/<chart>-<version>/{Chart,values}.yaml    from the chart archive listed in the repo index
#   DIR/charts/<chart>-<version>/values-refs.txt        every .Values path the chart's templates read
#                                                       (subchart paths prefixed with the subchart name)
#
# Sources (bump together with kube/ and DESIGN.md's pinned versions):
#   Flux source-controller v1.9.1        https://raw.githubusercontent.com/fluxcd/source-controller/v1.9.1/config/crd/bases/
#   Flux kustomize-controller v1.9.4     https://raw.githubusercontent.com/fluxcd/kustomize-controller/v1.9.4/config/crd/bases/
#   Flux helm-controller v1.6.3          https://raw.githubusercontent.com/fluxcd/helm-controller/v1.6.3/config/crd/bases/
#   Flux notification-controller v1.9.3  https://raw.githubusercontent.com/fluxcd/notification-controller/v1.9.3/config/crd/bases/
#   prometheus-operator v0.93.0          https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/v0.93.0/example/prometheus-operator-crd/
#   kube-prometheus-stack 88.5.3         https://prometheus-community.github.io/helm-charts (index.yaml -> archive);
#                                        its grafana 12.11.1, kube-state-metrics 8.4.0 and prometheus-node-exporter
#                                        4.56.1 subcharts are taken from inside that archive
#   metrics-server 3.13.1                https://kubernetes-sigs.github.io/metrics-server/ (index.yaml -> archive)
#
# Integrity: each chart archive must match the sha256 digest its repository index publishes, and every
# upstream file written must match the sha256 recorded in PINNED_SHA256 below (the copies in
# ../shared/schemas these tests were written against). A mismatch stops the script and names the file;
# nothing is left half-written because files are assembled in a temporary directory and moved at the end.
# values-refs.txt is derived from the chart templates, so it has no recorded checksum.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${FILEWCOUNT_SCHEMAS_DIR:-$here/../../shared/schemas}}"

python=""
for candidate in "$here/../.venv/bin/python" python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "fetch-schemas: no Python with PyYAML found; run 'make venv' first." >&2
  exit 2
fi

exec "$python" - "$dest" <<'PYTHON'
import hashlib
import io
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

DEST = Path(sys.argv[1]).expanduser()

RAW = "https://raw.githubusercontent.com"
CRDS = {
    f"{RAW}/fluxcd/source-controller/v1.9.1/config/crd/bases/": [
        "source.toolkit.fluxcd.io_buckets.yaml",
        "source.toolkit.fluxcd.io_gitrepositories.yaml",
        "source.toolkit.fluxcd.io_helmcharts.yaml",
        "source.toolkit.fluxcd.io_helmrepositories.yaml",
        "source.toolkit.fluxcd.io_ocirepositories.yaml",
    ],
    f"{RAW}/fluxcd/kustomize-controller/v1.9.4/config/crd/bases/": [
        "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    ],
    f"{RAW}/fluxcd/helm-controller/v1.6.3/config/crd/bases/": [
        "helm.toolkit.fluxcd.io_helmreleases.yaml",
    ],
    f"{RAW}/fluxcd/notification-controller/v1.9.3/config/crd/bases/": [
        "notification.toolkit.fluxcd.io_alerts.yaml",
        "notification.toolkit.fluxcd.io_providers.yaml",
        "notification.toolkit.fluxcd.io_receivers.yaml",
    ],
    f"{RAW}/prometheus-operator/prometheus-operator/v0.93.0/example/prometheus-operator-crd/": [
        "monitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com_probes.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
    ],
}
# (repository URL, chart, version, subcharts to extract from the archive)
CHARTS = [
    ("https://prometheus-community.github.io/helm-charts", "kube-prometheus-stack", "88.5.3",
     ["grafana", "kube-state-metrics", "prometheus-node-exporter"]),
    ("https://kubernetes-sigs.github.io/metrics-server/", "metrics-server", "3.13.1", []),
]
PINNED_SHA256 = {
    "crds/helm.toolkit.fluxcd.io_helmreleases.yaml":
        "aa8638ac68465ceac1f93a617baf5be833c589c51fd78a7384a4a274c252becc",
    "crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml":
        "da23ca0e6b4c80d3d26a91583137491e147ef4ef1e2208aece0d0af4ef851974",
    "crds/monitoring.coreos.com_podmonitors.yaml":
        "45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d",
    "crds/monitoring.coreos.com_probes.yaml":
        "f4ead9704bd4c6303d53e4cc15670faaf0609022a5e08c0ce496286f453666b7",
    "crds/monitoring.coreos.com_prometheusrules.yaml":
        "78be98554b9c8506ab2b4f4feb91c5f3a56e536a0a510f3a8e876a459970d56d",
    "crds/monitoring.coreos.com_servicemonitors.yaml":
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32",
    "crds/notification.toolkit.fluxcd.io_alerts.yaml":
        "2b8f79249b39881bd23c49868f114c44c6e632dfcda451da576adfa16c64226f",
    "crds/notification.toolkit.fluxcd.io_providers.yaml":
        "243ad33ac88ed965c6cd72b342dc5a93ecf5eefde2e03f4c2ea026b52d872135",
    "crds/notification.toolkit.fluxcd.io_receivers.yaml":
        "4c8be1ad7789b78f0727557d01e5f33eef9447a1f4aa9b830a3c1cc8a1508a9b",
    "crds/source.toolkit.fluxcd.io_buckets.yaml":
        "366d4926a698332d824e97e9a9adf763f44dd7b59b70034916ebeefd91f1e43e",
    "crds/source.toolkit.fluxcd.io_gitrepositories.yaml":
        "39a5a46c81539c992abc53f9be3e5434cd70d50a10d169b1e8a450e0df1c9d09",
    "crds/source.toolkit.fluxcd.io_helmcharts.yaml":
        "dc0158d014e90007c0a084973ef561cd20d3d44520ed4e604e8acff8bb19d2b0",
    "crds/source.toolkit.fluxcd.io_helmrepositories.yaml":
        "97c7759df00946cbb9a75a56457cff9964b2543d2248df859cef21e26b8e2ae6",
    "crds/source.toolkit.fluxcd.io_ocirepositories.yaml":
        "2655834d468e46a533410d9e2bc3f4e7cbf9b4c922b95652012acb09bfb2545a",
    "charts/grafana-12.11.1/Chart.yaml":
        "4ca1085863a002c5d92bc4189fd083bde1f61ba5fc72b87d4a3274f99577b87e",
    "charts/grafana-12.11.1/values.yaml":
        "653e88838eb7553f561d2e6ffa3cbaa7d5b5029398af6ea2fdd2c27793853a68",
    "charts/kube-prometheus-stack-88.5.3/Chart.yaml":
        "e4af5d8f82d2c626d7a0c52dab589a39817acae7486196de16eef230388eb7ed",
    "charts/kube-prometheus-stack-88.5.3/values.yaml":
        "659289e3cc0ff503db75dd2969c8fe7295657357b82ff085d0b2a824d68b7755",
    "charts/kube-state-metrics-8.4.0/Chart.yaml":
        "8bf2f9c8557d4187a7331e27a4f566659639e1c6318e553f8b9ef4dabfb3736d",
    "charts/kube-state-metrics-8.4.0/values.yaml":
        "a4dea7869dc7b21d16a5bfc6de666e66b92f0fe1ae48c100344eb6d97cef16a4",
    "charts/metrics-server-3.13.1/Chart.yaml":
        "352c751ec06bb8563db335e0f468ad9d5d05bdc1d023ec033292b2d27d5e3c8a",
    "charts/metrics-server-3.13.1/values.yaml":
        "be54d11c89b45426703c3a25d9a2b701c4df3bdea540365def9ee7bbcfeb4886",
    "charts/prometheus-node-exporter-4.56.1/Chart.yaml":
        "27aaa04b10edc1933ba119a2813673b3b994324e33d4026ecf63c875c02d0601",
    "charts/prometheus-node-exporter-4.56.1/values.yaml":
        "428cec4fb54b0c0a58480d067f13b7f6851102fb5c5c1b282bf6f376073f21f0",
}

VALUES_DOT = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
VALUES_INDEX = re.compile(r"index\s+\$?\.Values((?:\s+\"[^\"]+\")+)")


def fail(message: str) -> None:
    sys.exit(f"fetch-schemas: {message}")


def get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URLs
            return response.read()
    except OSError as exc:
        fail(f"cannot download {url} ({exc}); check the network or the pinned version.")
        raise


def write(root: Path, rel: str, data: bytes) -> None:
    pinned = PINNED_SHA256.get(rel)
    digest = hashlib.sha256(data).hexdigest()
    if pinned and digest != pinned:
        fail(f"{rel} has sha256 {digest}, expected {pinned}; upstream changed or the pin is wrong.")
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    print(f"  {rel}  sha256:{digest[:16]}")


def template_refs(files: dict[str, bytes]) -> set[str]:
    refs = set()
    for name, data in files.items():
        if "/templates/" not in name:
            continue
        text = data.decode("utf-8", "replace")
        refs |= {m.group(1).lstrip(".") for m in VALUES_DOT.finditer(text)}
        refs |= {".".join(re.findall(r"\"([^\"]+)\"", m.group(1))) for m in VALUES_INDEX.finditer(text)}
    return refs


def chart_files(archive: bytes) -> dict[str, bytes]:
    """All regular files of a chart archive, nested subchart archives unpacked in place."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            if member.name.endswith(".tgz") and "/charts/" in member.name:
                sub_root = member.name.rsplit("/", 1)[0]
                for sub_name, sub_data in chart_files(data).items():
                    out[f"{sub_root}/{sub_name}"] = sub_data
            else:
                out[member.name] = data
    return out


def fetch_chart(root: Path, repo: str, chart: str, version: str, subcharts: list[str]) -> None:
    index = yaml.safe_load(get(repo.rstrip("/") + "/index.yaml"))
    entries = [e for e in index.get("entries", {}).get(chart, []) if str(e.get("version")) == version]
    if not entries:
        fail(f"{repo} has no {chart} {version} in its index.yaml.")
    entry = entries[0]
    url = urllib.parse.urljoin(repo.rstrip("/") + "/", entry["urls"][0])
    archive = get(url)
    if entry.get("digest") and hashlib.sha256(archive).hexdigest() != entry["digest"]:
        fail(f"{url} does not match the sha256 digest in {repo}/index.yaml.")
    files = chart_files(archive)
    top = f"{chart}/"
    write(root, f"charts/{chart}-{version}/Chart.yaml", files[f"{top}Chart.yaml"])
    write(root, f"charts/{chart}-{version}/values.yaml", files[f"{top}values.yaml"])
    own = {k: v for k, v in files.items() if k.startswith(top) and f"{top}charts/" not in k}
    refs = template_refs(own)
    for sub in subcharts:
        sub_top = f"{top}charts/{sub}/"
        sub_files = {k[len(top) + len("charts/"):]: v for k, v in files.items() if k.startswith(sub_top)}
        if f"{sub}/Chart.yaml" not in sub_files:
            fail(f"{chart} {version} does not bundle the {sub} subchart.")
        sub_version = str(yaml.safe_load(sub_files[f"{sub}/Chart.yaml"])["version"])
        write(root, f"charts/{sub}-{sub_version}/Chart.yaml", sub_files[f"{sub}/Chart.yaml"])
        write(root, f"charts/{sub}-{sub_version}/values.yaml", sub_files[f"{sub}/values.yaml"])
        sub_refs = template_refs(sub_files)
        (root / f"charts/{sub}-{sub_version}/values-refs.txt").write_text("".join(f"{r}\n" for r in sorted(sub_refs)))
        refs |= {f"{sub}.{r}" for r in sub_refs}
    (root / f"charts/{chart}-{version}/values-refs.txt").write_text("".join(f"{r}\n" for r in sorted(refs)))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="filewcount-schemas-") as tmp:
        root = Path(tmp)
        print("CRDs:")
        for base, names in CRDS.items():
            for name in names:
                write(root, f"crds/{name}", get(base + name))
        print("Charts:")
        for repo, chart, version, subcharts in CHARTS:
            fetch_chart(root, repo, chart, version, subcharts)
        missing = [rel for rel in PINNED_SHA256 if not (root / rel).is_file()]
        if missing:
            fail(f"these pinned files were not produced: {', '.join(missing)}.")
        DEST.mkdir(parents=True, exist_ok=True)
        for sub in ("crds", "charts"):
            shutil.rmtree(DEST / sub, ignore_errors=True)
            shutil.copytree(root / sub, DEST / sub)
    print(f"fetch-schemas: wrote {DEST}; run `make manifests` to validate kube/ against it.")


main()
PYTHON
