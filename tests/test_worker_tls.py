"""The worker over TLS (``wss://``): what its runtime dependencies (``twisted[tls]``) must give it.

A stand-in master listens with TLS on 127.0.0.1 under a certificate for ``localhost`` made here;
the worker verifies it against the CAs the platform trusts (``SSL_CERT_FILE`` names ours).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_worker import PASSWORD, make_worker
from twisted.internet import reactor, ssl
from wsmaster import FakeMaster, MasterPeer

from ci_common import protocol

pytestmark = pytest.mark.slow  # the worker runs real commands


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_file, key_file


class TlsMaster(FakeMaster):
    """The stand-in master, listening with TLS."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        super().__init__({"w1": PASSWORD})
        pem = cert_file.read_text() + key_file.read_text()
        self.context = ssl.PrivateCertificate.loadPEM(pem).options()

    @property
    def url(self) -> str:
        return f"wss://localhost:{self.port}/worker"

    def start(self, port: int = 0) -> None:
        from autobahn.twisted.websocket import WebSocketServerFactory

        factory = WebSocketServerFactory()
        factory.protocol = MasterPeer
        factory.fake = self
        self._listening = reactor.listenSSL(port, factory, self.context, interface="127.0.0.1")
        self.port = self._listening.getHost().port


@pytest_twisted.ensureDeferred
async def test_worker_connects_over_wss_and_checks_the_certificate(tmp_path: Path, monkeypatch) -> None:
    cert_file, key_file = self_signed(tmp_path)
    master = TlsMaster(cert_file, key_file)
    master.start()
    try:
        # not trusted: the worker refuses the master, and says so
        untrusting = make_worker(tmp_path / "u", master.url)
        untrusting.startService()
        try:
            outcome = await untrusting.first_outcome
        finally:
            await untrusting.stopService()
        assert "certificate verify failed" in outcome, outcome
        assert master.hellos == []

        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        worker = make_worker(tmp_path / "w", master.url)
        worker.startService()
        try:
            link = await master.next_link()
            assert link.hello["name"] == "w1" and link.hello["protocol"] == protocol.PROTOCOL_VERSION
            assert (await worker.first_outcome).startswith(f"connected to {master.url} as w1")
            command = link.run(shell="echo over tls")
            assert (await command.wait())["rc"] == 0
            assert command.text("o") == "over tls\n"
        finally:
            await worker.stopService()
    finally:
        await master.stop()
