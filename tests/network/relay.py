"""An attacker's TLS relay for tests: terminates TLS with its own certificate, opens its own TLS connection to
the real device, forwards bytes both ways and records every plaintext byte it saw.

    python tests/network/relay.py LISTEN_PORT TARGET_HOST TARGET_PORT CAPTURE_FILE
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _own_certificate(folder: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "et-0000000000000000")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    (folder / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (folder / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "c.pem", folder / "k.pem")
    return ctx


async def main(listen_port: int, host: str, port: int, capture: Path) -> None:
    server_ctx = _own_certificate(Path(tempfile.mkdtemp()))
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    log = capture.open("ab")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: bytes) -> None:
        try:
            while data := await reader.read(65536):
                log.write(tag + data + b"\n")
                log.flush()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, port, ssl=client_ctx)
        await asyncio.gather(pipe(reader, up_writer, b">>"), pipe(up_reader, writer, b"<<"))

    server = await asyncio.start_server(handle, "0.0.0.0", listen_port, ssl=server_ctx)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
