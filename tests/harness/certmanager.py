"""cert-manager for a harness cluster: a STAND-IN, since none of its programs can be built here (test harness only).

The chart the tree installs (cert-manager v1.21.1, from ../shared/charts) is real and installed by the real
helm-controller; its controller, webhook and cainjector are not run. Their Go modules
(github.com/cert-manager/cert-manager/{controller,webhook,cainjector}-binary) are not published on the Go module
proxy, and their go.mod replaces the main module with `../../`, so they build only from a checkout of the
repository. What stands in for them, only as far as the tree and the playbooks need:

- webhook (`certmanager.py webhook`, run by workloads.py behind Deployment cert-manager/cert-manager-webhook, its
  container port `https`): answers the chart's ValidatingWebhookConfiguration and MutatingWebhookConfiguration
  with `allowed: true` and no patch. The real webhook validates and defaults cert-manager objects; this one lets
  every object through, so the tree's objects are checked by the CRD schemas only (and by the manifest suite).
- cainjector (`inject_ca`): puts the stand-in webhook's CA into the caBundle of every webhook configuration whose
  annotation cert-manager.io/inject-ca-from-secret names the webhook's CA Secret, as the real cainjector does.
- controller (`issue`): for each Certificate whose issuer is a SelfSigned or CA (Cluster)Issuer, makes the key and
  certificate the spec asks for (common name, DNS names, isCA, duration, ECDSA or RSA key), writes the Secret
  (tls.crt, tls.key, ca.crt; type kubernetes.io/tls) and sets the Certificate Ready; marks a CA issuer Ready once
  its Secret exists. No CertificateRequest objects, no renewal, no ACME: a Certificate whose issuer is of another
  type stays not Ready with a condition saying the stand-in cannot issue it.

`reconcile(cluster)` runs the cainjector and controller parts once; workloads.py calls it every pass while the
chart's Deployment cert-manager/cert-manager-webhook exists (it lists that Deployment anyway).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.server
import json
import re
import ssl
import sys
from pathlib import Path

import cluster as harness
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

NAMESPACE = "cert-manager"
WEBHOOK = "cert-manager-webhook"
CERTIFICATES = "/apis/cert-manager.io/v1/certificates"
WEBHOOK_CONFIGURATIONS = (
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
)
INJECT_ANNOTATION = "cert-manager.io/inject-ca-from-secret"
DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


# --- the webhook ------------------------------------------------------------------------------------------------
def webhook_pki(root: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, tls.crt, tls.key) of the stand-in webhook under <cluster>/cert-manager/, made once."""
    pki = root / "cert-manager"
    if not (pki / "webhook.crt").exists():
        pki.mkdir(parents=True, exist_ok=True)
        ca = harness._ca(pki, "webhook-ca", "cert-manager-webhook-ca (harness stand-in)")
        names = [f"{WEBHOOK}.{NAMESPACE}.svc", f"{WEBHOOK}.{NAMESPACE}.svc.cluster.local", WEBHOOK, "127.0.0.1"]
        harness._leaf(pki, "webhook", ca, harness._name(names[0]), server=True, client=False, names=names)
    return pki / "webhook-ca.crt", pki / "webhook.crt", pki / "webhook.key"


class AdmissionHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        uid = (review.get("request") or {}).get("uid", "")
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": True},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # /livez, /healthz
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write("webhook: " + fmt % args + "\n")


def serve_webhook(root: Path, port: int) -> None:
    _ca, cert, key = webhook_pki(root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), AdmissionHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


# --- the cainjector ---------------------------------------------------------------------------------------------
def inject_ca(state: harness.Cluster) -> None:
    ca_file = state.root / "cert-manager" / "webhook-ca.crt"
    if not ca_file.exists():
        return
    bundle = base64.b64encode(ca_file.read_bytes()).decode()
    for base in WEBHOOK_CONFIGURATIONS:
        status, body = state.request("GET", base)
        if status != 200 or not isinstance(body, dict):
            continue
        for item in body.get("items") or []:
            source = (item["metadata"].get("annotations") or {}).get(INJECT_ANNOTATION, "")
            if source != f"{NAMESPACE}/{WEBHOOK}-ca":
                continue
            hooks = item.get("webhooks") or []
            if all((h.get("clientConfig") or {}).get("caBundle") == bundle for h in hooks):
                continue
            patch = [
                {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
                for i in range(len(hooks))
            ]
            state.request(
                "PATCH",
                f"{base}/{item['metadata']['name']}?fieldManager=cert-manager-cainjector",
                patch,
                content_type="application/json-patch+json",
            )


# --- the controller ---------------------------------------------------------------------------------------------
def _duration(text: str | None, default: datetime.timedelta) -> datetime.timedelta:
    if not text:
        return default
    seconds = 0.0
    for amount, unit in DURATION.findall(text):
        seconds += float(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return datetime.timedelta(seconds=seconds) if seconds else default


def _new_key(spec: dict):
    private_key = spec.get("privateKey") or {}
    if private_key.get("algorithm", "RSA") == "ECDSA":
        curves = {384: ec.SECP384R1(), 521: ec.SECP521R1()}
        return ec.generate_private_key(curves.get(private_key.get("size"), ec.SECP256R1()))
    return rsa.generate_private_key(public_exponent=65537, key_size=int(private_key.get("size") or 2048))


def _pem(key) -> bytes:
    encoding, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, pkcs8, serialization.NoEncryption())


def sign(spec: dict, issuer_key=None, issuer_cert: x509.Certificate | None = None) -> tuple[bytes, bytes, bytes]:
    """(tls.crt, tls.key, ca.crt) for a Certificate spec; self-signed when no issuer is given."""
    key = _new_key(spec)
    names = spec.get("dnsNames") or []
    subject = harness._name(spec.get("commonName") or (names[0] if names else "cert-manager"))
    now = datetime.datetime.now(datetime.UTC)
    lifetime = _duration(spec.get("duration"), datetime.timedelta(days=90))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=bool(spec.get("isCA")), path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if spec.get("isCA"):
        usage = {"key_cert_sign": True, "crl_sign": True}
    else:
        usage = {"key_cert_sign": False, "crl_sign": False}
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=not isinstance(key, ec.EllipticCurvePrivateKey),
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        critical=True,
    )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = issuer_cert.public_bytes(serialization.Encoding.PEM) if issuer_cert else cert_pem
    return cert_pem, _pem(key), ca_pem


def _secret(state: harness.Cluster, namespace: str, name: str) -> dict | None:
    status, body = state.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return body if status == 200 and isinstance(body, dict) else None


def _issuer(state: harness.Cluster, certificate: dict) -> tuple[dict | None, str]:
    """The issuer object of a Certificate and the namespace its CA Secret lives in."""
    ref = certificate["spec"].get("issuerRef") or {}
    namespace = certificate["metadata"]["namespace"]
    if ref.get("kind") == "ClusterIssuer":
        status, body = state.request("GET", f"/apis/cert-manager.io/v1/clusterissuers/{ref.get('name')}")
        return (body if status == 200 else None), NAMESPACE
    status, body = state.request("GET", f"/apis/cert-manager.io/v1/namespaces/{namespace}/issuers/{ref.get('name')}")
    return (body if status == 200 else None), namespace


def _set_ready(state: harness.Cluster, path: str, ready: bool, reason: str, message: str, *, extra: dict) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": message}
    status, current = state.request("GET", path)
    if status != 200 or not isinstance(current, dict):
        return
    old = {c.get("type"): c for c in (current.get("status") or {}).get("conditions") or []}.get("Ready") or {}
    if all(old.get(k) == v for k, v in condition.items()) and all(
        (current.get("status") or {}).get(k) == v for k, v in extra.items()
    ):
        return
    condition["lastTransitionTime"] = now
    condition["observedGeneration"] = current["metadata"].get("generation", 1)
    state.request(
        "PATCH",
        f"{path}/status",
        {"status": {**extra, "conditions": [condition]}},
        content_type="application/merge-patch+json",
    )


def _issue_one(state: harness.Cluster, certificate: dict) -> None:
    meta, spec = certificate["metadata"], certificate["spec"]
    path = f"/apis/cert-manager.io/v1/namespaces/{meta['namespace']}/certificates/{meta['name']}"
    existing = _secret(state, meta["namespace"], spec["secretName"])
    annotations = (existing or {}).get("metadata", {}).get("annotations") or {}
    if existing and annotations.get("cert-manager.io/certificate-generation") == str(meta.get("generation", 1)):
        cert = x509.load_pem_x509_certificate(base64.b64decode(existing["data"]["tls.crt"]))
        _set_ready(
            state,
            path,
            True,
            "Ready",
            "Certificate is up to date and has not expired",
            extra={"notAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"), "revision": 1},
        )
        return
    issuer, ca_namespace = _issuer(state, certificate)
    issuer_spec = (issuer or {}).get("spec") or {}
    if "selfSigned" in issuer_spec:
        tls_crt, tls_key, ca_crt = sign(spec)
    elif "ca" in issuer_spec:
        ca_secret = _secret(state, ca_namespace, issuer_spec["ca"].get("secretName", ""))
        if not ca_secret:
            _set_ready(state, path, False, "Pending", "Waiting for the issuer's CA Secret (harness stand-in)", extra={})
            return
        ca_key = serialization.load_pem_private_key(base64.b64decode(ca_secret["data"]["tls.key"]), password=None)
        ca_cert = x509.load_pem_x509_certificate(base64.b64decode(ca_secret["data"]["tls.crt"]))
        tls_crt, tls_key, ca_crt = sign(spec, ca_key, ca_cert)
    else:
        _set_ready(
            state,
            path,
            False,
            "Pending",
            "The harness stand-in of cert-manager issues from SelfSigned and CA issuers only",
            extra={},
        )
        return
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": spec["secretName"],
            "namespace": meta["namespace"],
            "annotations": {
                "cert-manager.io/certificate-name": meta["name"],
                "cert-manager.io/certificate-generation": str(meta.get("generation", 1)),
                "cert-manager.io/issuer-name": spec["issuerRef"]["name"],
                "cert-manager.io/issuer-kind": spec["issuerRef"].get("kind", "Issuer"),
            },
        },
        "data": {
            "tls.crt": base64.b64encode(tls_crt).decode(),
            "tls.key": base64.b64encode(tls_key).decode(),
            "ca.crt": base64.b64encode(ca_crt).decode(),
        },
    }
    state.request(
        "PATCH",
        f"/api/v1/namespaces/{meta['namespace']}/secrets/{spec['secretName']}?fieldManager=cert-manager&force=true",
        secret,
        content_type="application/apply-patch+yaml",
    )


def issue(state: harness.Cluster) -> None:
    status, body = state.request("GET", CERTIFICATES)
    if status != 200 or not isinstance(body, dict):
        return  # the CRD is not there yet
    for certificate in body.get("items") or []:
        if not certificate["metadata"].get("deletionTimestamp"):
            _issue_one(state, certificate)
    status, body = state.request("GET", "/apis/cert-manager.io/v1/clusterissuers")
    for issuer in (body.get("items") or []) if status == 200 and isinstance(body, dict) else []:
        path = f"/apis/cert-manager.io/v1/clusterissuers/{issuer['metadata']['name']}"
        spec = issuer.get("spec") or {}
        if "selfSigned" in spec:
            _set_ready(state, path, True, "IsReady", "", extra={})
        elif "ca" in spec:
            found = _secret(state, NAMESPACE, spec["ca"].get("secretName", ""))
            _set_ready(
                state,
                path,
                bool(found),
                "KeyPairVerified" if found else "ErrGetKeyPair",
                "Signing CA verified" if found else "Error getting keypair for CA issuer",
                extra={},
            )


def reconcile(state: harness.Cluster) -> None:
    """One pass of the cainjector and controller stand-ins."""
    inject_ca(state)
    issue(state)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    webhook = sub.add_parser("webhook", help="serve the admission webhook stand-in")
    webhook.add_argument("--cluster-root", type=Path, required=True)
    webhook.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve_webhook(args.cluster_root, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
