"""The S3 backend against a real S3-compatible server (SeaweedFS, started by the tests on 127.0.0.1), with two
relay replicas sharing one bucket."""

from __future__ import annotations

import time
import uuid

import boto3
import httpx
import pytest

from relay.crypto import Signer, new_token, parse_token
from tests.conftest import Appliance, fetch_link, link_secret, samples, wait_for
from tests.relay.conftest import S3_ENV, RelayProc, SeaweedFS


# Slow (a SeaweedFS server and two relay replicas, about 18 s): `make test-slow`, in CI too.
@pytest.mark.slow
def test_two_replicas_on_one_bucket_serve_each_others_receipts(
    seaweedfs: SeaweedFS, appliance_factory: object, relay_factory: object
) -> None:
    bucket = "eticket-" + uuid.uuid4().hex[:8]
    flags = ("--s3-endpoint", seaweedfs.s3_url)
    a: RelayProc = relay_factory(*flags, storage=f"s3://{bucket}", env=S3_ENV)  # type: ignore[operator]
    b: RelayProc = relay_factory(*flags, storage=f"s3://{bucket}", env=S3_ENV)  # type: ignore[operator]
    app: Appliance = appliance_factory("--relay-url", a.url)  # type: ignore[operator]
    token = app.pair()
    pdf = samples("pdf")[0].read_bytes()
    r = app.api.post("/api/v1/tickets", content=pdf,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    wait_for(lambda: httpx.get(app.url + "/healthz").json()["relay"]["sent"] == 1, 20, "the upload to replica A")
    path = url.removeprefix(a.url)
    assert path.startswith("/r#")
    assert fetch_link(b.url + path).content == pdf  # served by the replica that did not receive it
    # The download went through B; the device long-polls A, which sees B's mark in the bucket.
    wait_for(lambda: app.display()["scene"] == "downloaded", 10, "the downloaded scene via the other replica")

    s3 = boto3.client("s3", endpoint_url=seaweedfs.s3_url, region_name="us-east-1",
                      aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    receipts = [k for k in keys if k.startswith("r/")]
    assert len(receipts) == 1 and any(k.startswith("d/") for k in keys)
    objects = [k for k in keys if k.startswith("o/")]
    assert [k[2:] for k in objects] == [k[2:] for k in receipts]
    body = s3.get_object(Bucket=bucket, Key=objects[0])["Body"].read()
    assert b"%PDF" not in body and pdf[:200] not in body and link_secret(path) not in "".join(keys)

    # An operator's block written through one replica's storage applies on the other.
    device = httpx.get(app.url + "/healthz").json()["relay"]["relay_id"]
    assert b.admin("block", device).returncode == 0
    assert s3.head_object(Bucket=bucket, Key=f"b/{device}")
    signer = Signer((app.data_dir / "tls" / "key.pem").read_bytes())
    rid = parse_token(new_token()).rid

    def upload_via_a() -> int:
        headers = signer.headers("PUT", f"/api/v1/receipts/{rid}", b"x", expires=int(time.time()) + 60)
        return httpx.put(f"{a.url}/api/v1/receipts/{rid}", content=b"x", headers=headers).status_code

    wait_for(lambda: upload_via_a() == 403, 15, "replica A to refuse the device blocked through B")
