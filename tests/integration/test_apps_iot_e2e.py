"""IoT attestation end to end on a real four-organisation chain: devices registered through the CLI, 100,000
device-signed readings anchored by a gateway in one transaction, one reading proven and checked offline — and
refused after a one-byte change; a forged signature stops the anchoring; the verifier refuses, naming the
reason, a reading of a retired device, of a device of another organisation and outside the batch window."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qilian.apps.iot.sdk import make_batch, sign_reading
from qilian.crypto import get_suite
from qilian.sdk.client import Client
from qilian.sdk.keys import KeyPair, generate_key, load_key, save_key

from .apputil import OrgChain
from .apputil import out as flat

pytestmark = pytest.mark.timeout(900)
SUITE = get_suite("ed25519")
DEVICES = 10
PER_DEVICE = 10_000


@pytest.fixture
def net(tmp_path: Path) -> Iterator[OrgChain]:
    n = OrgChain(tmp_path)
    n.node.start()
    try:
        yield n
    finally:
        n.node.stop()


def _reading(device: str, seq: int, t: int) -> dict[str, Any]:
    return {"device": device, "seq": seq, "t": t, "values": {"temp": f"{20 + seq % 7}.{seq % 10}", "rh": seq % 100}}


def _write(path: Path, signed: list[tuple[dict[str, Any], bytes]]) -> None:
    path.write_text("".join(json.dumps({"reading": r, "sig": s.hex()}, separators=(",", ":")) + "\n"
                            for r, s in signed))


def _anchor_raw(net: OrgChain, key: KeyPair, signed: list[tuple[dict[str, Any], bytes]], store: Path,
                window: tuple[int, int] | None = None, devices: list[str] | None = None) -> None:
    """Anchor like a careless or dishonest gateway (no checks), keeping the batch where `iot prove` finds it."""
    batch = make_batch(SUITE.hash, signed)
    args = batch.to_anchor_args("raw")
    if window is not None:
        args[3], args[4] = window
    if devices is not None:
        args[2] = devices
    with Client(net.node.url) as c:
        res = c.call(key, "iot", "anchor", args)
    assert res["receipt"]["status"] == "ok", res
    n = res["receipt"]["result"]["batch"]
    store.mkdir(exist_ok=True)
    (store / f"batch-{n}.json").write_text(json.dumps({"batch": n, "tx_hash": res["hash"], "root": batch.root.hex(),
                                                       "readings": [[r, s.hex()] for r, s in signed]}))


def test_iot_anchor_100k_prove_one_and_refusals(net: OrgChain, tmp_path: Path) -> None:
    farm_admin, farm_gw = net.key("farm-admin"), net.key("farm-client")
    keys: dict[str, KeyPair] = {}
    for i in range(DEVICES):
        k = generate_key("ed25519")
        save_key(k, tmp_path / f"dev-{i}.pem")
        keys[f"dev-{i}"] = k
    net.cli("iot", "device", "add", "dev-0", "--device-key", str(tmp_path / "dev-0.pem"), "--key", farm_admin)
    p = net.cli("iot", "device", "add", "dev-0", "--device-key", str(tmp_path / "dev-0.pem"), "--key", farm_admin,
                check=False)
    assert p.returncode == 1 and "already registered" in flat(p)
    admin = load_key(Path(farm_admin))
    with Client(net.node.url) as c:
        for i in range(1, DEVICES):
            assert c.call(admin, "iot", "add_device", [f"dev-{i}", "ed25519", keys[f"dev-{i}"].public_key]
                          )["receipt"]["status"] == "ok"

    now = int(time.time() * 1000)
    signed = [(r, sign_reading("ed25519", keys[r["device"]].private_key, r))
              for r in (_reading(f"dev-{i % DEVICES}", i // DEVICES, now - 600_000 + i // DEVICES)
                        for i in range(DEVICES * PER_DEVICE))]
    readings = tmp_path / "readings.jsonl"
    _write(readings, signed)
    # a forged signature: refused by the gateway, naming the reading; nothing is anchored
    forged = tmp_path / "forged.jsonl"
    bad = [*signed[:5], (signed[5][0], signed[6][1])]
    _write(forged, bad)
    p = net.cli("iot", "anchor", str(forged), "--key", farm_gw, check=False)
    assert p.returncode == 1 and "reading dev-5:0: the signature is not by device dev-5" in flat(p)
    assert httpx.get(f"{net.node.url}/iot/batches/1").status_code == 404

    store = tmp_path / "iot-store"
    p = net.cli("iot", "anchor", str(readings), "--store", str(store), "--key", farm_gw)
    assert "100000 reading(s) of 10 device(s)" in flat(p)
    assert httpx.get(f"{net.node.url}/iot/batches/1").json()["count"] == 100_000

    proof = tmp_path / "proof.json"
    net.cli("iot", "prove", "dev-3:4242", "--store", str(store), "--out", str(proof))
    p = net.cli("iot", "check", str(proof), "--genesis", str(net.home / "genesis.json"), node=False)
    assert "VALID" in p.stdout and "dev-3:4242" in flat(p) and "anchored by farm" in flat(p)
    doc = json.loads(proof.read_text())
    assert len(doc["merkle"]["path"]) == 17  # ceil(log2(100,000))
    # one byte changed in the reading: refused
    doc["reading"]["values"]["temp"] = doc["reading"]["values"]["temp"][:-1] + "9"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    p = net.cli("iot", "check", str(tampered), node=False, check=False)
    assert p.returncode == 2 and "not in the anchored batch" in flat(p)

    # a retired device: its readings from after the retirement are refused when proven
    res = net.cli("iot", "device", "retire", "dev-2", "--key", farm_admin)
    retired_ms = int(httpx.get(f"{net.node.url}/iot/devices/dev-2").json()["retired_ms"])
    assert "retired" in flat(res)
    late = [(r, sign_reading("ed25519", keys["dev-2"].private_key, r))
            for r in (_reading("dev-2", 100_000, retired_ms - 1000), _reading("dev-2", 100_001, retired_ms + 5))]
    _anchor_raw(net, load_key(Path(farm_gw)), late, store)
    p = net.cli("iot", "prove", "dev-2:100001", "--store", str(store), check=False)
    assert p.returncode == 1 and "device dev-2 was retired at height" in flat(p)
    net.cli("iot", "prove", "dev-2:100000", "--store", str(store), "--out", str(tmp_path / "ok.json"))

    # a key of another organisation: the processor's device reading slipped into the farm's batch
    pk = generate_key("ed25519")
    save_key(pk, tmp_path / "dev-p.pem")
    net.cli("iot", "device", "add", "dev-p", "--device-key", str(tmp_path / "dev-p.pem"), "--key",
            net.key("processor-admin"))
    t = int(time.time() * 1000)
    mixed = [(r, sign_reading("ed25519", k.private_key, r))
             for r, k in ((_reading("dev-1", 200_000, t - 10), keys["dev-1"]), (_reading("dev-p", 1, t - 5), pk))]
    _anchor_raw(net, load_key(Path(farm_gw)), mixed, store, devices=["dev-1"])
    p = net.cli("iot", "prove", "dev-p:1", "--store", str(store), check=False)
    assert p.returncode == 1 and "key of another organisation: device dev-p is registered by processor" in flat(p)

    # a reading outside the window the batch declared
    t = int(time.time() * 1000)
    outside = [(r, sign_reading("ed25519", keys["dev-1"].private_key, r))
               for r in (_reading("dev-1", 300_000, t - 100), _reading("dev-1", 300_001, t - 50))]
    _anchor_raw(net, load_key(Path(farm_gw)), outside, store, window=(t - 100, t - 60))
    p = net.cli("iot", "prove", "dev-1:300001", "--store", str(store), check=False)
    assert p.returncode == 1 and "outside the batch window" in flat(p)
