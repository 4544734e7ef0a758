"""`qilian sim` as a user runs it: a summary for one seed, the same trace hash twice, a sweep with seeds/s, and a
failing negative control that prints the seed, a replay command and a trace, with exit status 1."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from qilian.cli.main import app

runner = CliRunner()


def test_one_seed_prints_summary_and_reproducible_hash() -> None:
    args = ["sim", "--seed", "11", "--nodes", "4", "--byzantine", "1", "--faults", "all", "--heights", "3"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "violations: 0" in first.output and "heights decided" in first.output and "probes:" in first.output
    hashes = re.findall(r"trace hash ([0-9a-f]{64})", first.output)
    second = runner.invoke(app, args)
    assert hashes and hashes == re.findall(r"trace hash ([0-9a-f]{64})", second.output)


def test_sweep_prints_seeds_per_second() -> None:
    out = runner.invoke(app, ["sim", "--sweep", "6", "--nodes", "4", "--byzantine", "1", "--weighted"])
    assert out.exit_code == 0, out.output
    assert re.search(r"6 seeds in [0-9.]+ s = [0-9.]+ seeds/s", out.output) and "violations: 0" in out.output


def test_negative_control_fails_with_a_replay_line() -> None:
    out = runner.invoke(app, ["sim", "--seed", "4", "--sweep", "20", "--nodes", "4", "--byzantine", "2",
                              "--behaviours", "equivocate,double-vote", "--allow-unsafe", "--show-failures", "1"])
    assert out.exit_code == 1, out.output
    assert "FAIL seed" in out.output and "agreement" in out.output
    replay = re.search(r"replay: qilian (sim [^\n]+) --trace", out.output)
    assert replay and "last" in out.output
    again = runner.invoke(app, [*replay.group(1).split(), "--trace"])
    assert again.exit_code == 1 and "agreement" in again.output


def test_bad_parameters_are_refused_clearly() -> None:
    out = runner.invoke(app, ["sim", "--nodes", "4", "--byzantine", "2"])
    assert out.exit_code == 2 and "1/3" in out.output
    out = runner.invoke(app, ["sim", "--faults", "meteor"])
    assert out.exit_code == 2 and "unknown fault" in out.output


def test_time_box_stops_a_long_sweep() -> None:
    out = runner.invoke(app, ["sim", "--sweep", "100000", "--time-box", "1", "--nodes", "4"])
    assert out.exit_code == 0, out.output
    m = re.search(r"\((\d+) seeds\)", out.output)
    assert m and 1 <= int(m.group(1)) < 100000
