"""Regenerate tests/vectors/trace_events.json: sample EPCIS events, their canonical bytes and their hashes under
both suites (docs/apps/trace.md, "Event hashing"). Run: PYTHONPATH=src python tests/vectors/make_trace_vectors.py"""

from __future__ import annotations

import json
from pathlib import Path

from qilian.apps.trace.epcis import DOMAIN_EPCIS, compute_event_bytes, compute_event_hash
from qilian.crypto import get_suite

EVENTS = [
    {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": "2025-05-01T08:00:00+08:00",
     "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
     "ilmd": {"lotNumber": "urn:epc:class:lgtin:0614141.107346.L1"},
     "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"}},
    {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": "2025-05-02T09:30:00Z",
     "epcList": ["urn:epc:id:sscc:0614141.1234567890"], "disposition": "in_transit",
     "destinationList": [{"type": "owning_party", "destination": "processor"}],
     "sensorElementList": [{"sensorReport": [{"type": "Temperature", "value": "4.5", "uom": "CEL"}]}]},
    {"type": "AggregationEvent", "action": "ADD", "bizStep": "packing", "eventTime": "2025-05-01T10:00:00+08:00",
     "parentID": "urn:epc:id:sscc:0614141.1234567890", "childEPCs": ["urn:epc:id:sgtin:0614141.107346.2017"]},
    {"type": "TransformationEvent", "bizStep": "transforming", "eventTime": "2025-05-03T12:00:00+08:00",
     "inputEPCList": ["urn:epc:id:sgtin:0614141.107346.2017"], "outputEPCList": ["urn:bakery:cake:1"],
     "ilmd": {"lotNumber": "urn:bakery:lot:2025-05-03"}},
]


def main() -> None:
    vectors = [{"event": e, "canonical_hex": compute_event_bytes(e).hex(),
                "hash": {s: compute_event_hash(get_suite(s).hash, e).hex() for s in ("sm2", "ed25519")}}
               for e in EVENTS]
    doc = {"description": "event_hash = H(domain || canonical encoding of the event map); H is SM3 (sm2 suite) or "
                          "SHA-256 (ed25519 suite); the encoding is docs/spec/encoding.md",
           "domain_hex": DOMAIN_EPCIS.hex(), "vectors": vectors}
    (Path(__file__).parent / "trace_events.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
