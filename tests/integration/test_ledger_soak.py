"""Issue 17's invariants run, CI length: ``qilian bench ledger`` for 60 s on a real 4-validator network with
conflicting transfers, swaps and escrows and a validator SIGKILLed and restarted midway; every invariant must hold
on every node (the 10-minute version is ``--duration 600``; docs/apps/payments.md)."""

from __future__ import annotations

import pytest

from qilian.apps.payments.soak import SoakConfig, run_ledger_soak

pytestmark = pytest.mark.timeout(900)


def test_ledger_invariants_with_a_validator_killed() -> None:
    report = run_ledger_soak(SoakConfig(duration_s=60.0), print)
    assert report.ok, report.violations
    assert report.killed and report.restarted_at_s > report.killed_at_s
    assert report.nodes_checked == 4 and report.acknowledged > 50
    assert report.ops.get("transfer", {}).get("ok", 0) > 0 and report.ops.get("swap", {}).get("ok", 0) > 0
    for sym, a in report.assets.items():
        assert a["supply"] == a["minted"] - a["burned"] == a["sum_of_balances"], sym
