"""End-to-end: push every artifact to an S3 remote (a real S3-compatible server on 127.0.0.1), pull it back."""

from __future__ import annotations

import shutil
import socket

import pytest
import yaml

# In the dev extra; skipped only where someone installed ptft without it.
boto3 = pytest.importorskip("boto3")
pytest.importorskip("dvc_s3")
ThreadedMotoServer = pytest.importorskip("moto.server").ThreadedMotoServer

from ptft.lineage import md5_path
from tests.conftest import copy_clone, dvc

BUCKET = "ptft-remote"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(monkeypatch_module) -> str:
    """moto's S3 server on a free local port, with one empty bucket; credentials in the environment."""
    for key, value in CREDENTIALS.items():
        monkeypatch_module.setenv(key, value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def add_remote(clone, endpoint: str) -> None:
    # --local: the endpoint is this test's; a team would commit `dvc remote add -d` to .dvc/config.
    dvc("remote", "add", "--local", "-d", "storage", f"s3://{BUCKET}/dvc", cwd=clone)
    dvc("remote", "modify", "--local", "storage", "endpointurl", endpoint, cwd=clone)


def cached_outs(clone) -> dict[str, str]:
    """Every DVC-cached output with its md5 from dvc.lock (metrics and plots are cache: false: git has them)."""
    stages = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]
    cached = {out for spec in stages.values() for out in spec.get("outs", []) if isinstance(out, str)}
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage["outs"]
            if out["path"] in cached}


def test_push_then_pull_restores_every_artifact_exactly(smoke_run, s3_endpoint, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    add_remote(clone, s3_endpoint)
    dvc("push", "--run-cache", cwd=clone)
    outs = cached_outs(clone)
    assert {"data/prepared", "data/tokenizer", "models/pretrained", "models/finetuned"} <= set(outs)

    shutil.rmtree(clone / ".dvc/cache")
    for path in outs:
        shutil.rmtree(clone / path) if (clone / path).is_dir() else (clone / path).unlink()
    dvc("pull", cwd=clone)
    assert "Data and pipelines are up to date" in dvc("status", cwd=clone).stdout
    assert {path: md5_path(clone / path) for path in outs} == outs
