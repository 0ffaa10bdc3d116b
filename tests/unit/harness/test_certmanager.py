"""Tests of the harness's cert-manager stand-in (tests/harness/certmanager.py): what it issues and how it answers."""

from __future__ import annotations

import datetime
import json
import ssl
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "harness"))
import certmanager
import cluster as harness


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_a_self_signed_ca_signs_a_server_certificate_for_the_named_hosts() -> None:
    ca_crt, ca_key, ca_bundle = certmanager.sign(
        {"isCA": True, "commonName": "local CA", "duration": "87600h", "privateKey": {"algorithm": "ECDSA"}}
    )
    ca = _load(ca_crt)
    assert ca_bundle == ca_crt
    assert ca.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert datetime.timedelta(days=3649) < lifetime < datetime.timedelta(days=3651)

    key = serialization.load_pem_private_key(ca_key, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    spec = {"dnsNames": ["filewcount.localhost", "grafana.localhost"], "duration": "2160h"}
    leaf_crt, leaf_key, leaf_bundle = certmanager.sign(spec, key, ca)
    leaf = _load(leaf_crt)
    leaf.verify_directly_issued_by(ca)
    assert leaf_bundle == ca_crt
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == spec["dnsNames"]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ExtendedKeyUsageOID.SERVER_AUTH in usages
    # The default key, as cert-manager's, is RSA 2048.
    assert isinstance(serialization.load_pem_private_key(leaf_key, password=None), rsa.RSAPrivateKey)


@pytest.mark.parametrize(
    ("text", "hours"),
    [("2160h", 2160), ("1h30m", 1.5), ("90m", 1.5), (None, 90 * 24), ("", 90 * 24)],
)
def test_durations_read_as_cert_manager_writes_them(text: str | None, hours: float) -> None:
    default = datetime.timedelta(days=90)
    assert certmanager._duration(text, default) == datetime.timedelta(hours=hours)


def test_the_webhook_admits_every_object_over_tls_with_its_own_ca(tmp_path: Path) -> None:
    port = harness.free_port()
    ca_file, _cert, _key = certmanager.webhook_pki(tmp_path)
    threading.Thread(target=certmanager.serve_webhook, args=(tmp_path, port), daemon=True).start()
    context = ssl.create_default_context(cafile=str(ca_file))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "abc-123"}}
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/validate?timeout=10s",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )

    def ask():
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    answer = harness.wait_for("the webhook stand-in to answer", ask, 10, interval=0.2)
    assert answer["response"] == {"uid": "abc-123", "allowed": True}
    served = x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "cert-manager-webhook.cert-manager.svc" in names.get_values_for_type(x509.DNSName)
