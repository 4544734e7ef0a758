"""`qilian sim`: run the deterministic consensus simulator for one seed or a sweep of seeds.

A failure prints the seed, the parameters as a command line that replays it exactly, the violations and the last
lines of the trace. Exit status 1 when any invariant was broken (so a sweep can gate CI)."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def sim(
    seed: Annotated[int, typer.Option(help="Root seed (the first seed of a sweep).")] = 1,
    nodes: Annotated[int, typer.Option(help="Validators.")] = 4,
    byzantine: Annotated[int, typer.Option(help="Byzantine validators (below 1/3 of the power unless "
                                                "--allow-unsafe).")] = 0,
    faults: Annotated[str, typer.Option(help="all, none, or a list of: drop,dup,reorder,partition,asym,isolate,"
                                             "crash,torn,drift.")] = "all",
    heights: Annotated[int, typer.Option(help="Heights every correct node must commit.")] = 4,
    behaviours: Annotated[str, typer.Option(help="mix, or a list of: equivocate,double-vote,silent,spam,"
                                                 "dup-key.")] = "mix",
    weighted: Annotated[bool, typer.Option("--weighted", help="Random voting powers 1..10.")] = False,
    sweep: Annotated[int, typer.Option(help="Run this many seeds (seed, seed+1, ...); 0: one run.")] = 0,
    time_box: Annotated[float, typer.Option(help="Stop a sweep after this many seconds (0: no limit).")] = 0.0,
    chaos_ticks: Annotated[int | None, typer.Option(help="Length of the fault phase (ticks = simulated ms).")
                           ] = None,
    liveness_bound: Annotated[int | None, typer.Option(help="Ticks after the heal within which every correct "
                                                            "node must commit a new height.")] = None,
    allow_unsafe: Annotated[bool, typer.Option("--allow-unsafe", help="Allow ≥ 1/3 Byzantine power (negative "
                                                                      "control: violations expected).")] = False,
    amnesia: Annotated[bool, typer.Option("--amnesia", help="Restarts lose WAL and signer state (negative "
                                                            "control for double signing).")] = False,
    crash_every: Annotated[int, typer.Option(help="Crash sweep: plan a crash at a seeded durable operation of a "
                                                   "random correct node every 100..N ticks (0: off).")] = 0,
    crash_sweep: Annotated[int, typer.Option(help="Run seeds until this many crash points were taken (sets "
                                                  "--crash-every 600 unless given).")] = 0,
    valset_changes: Annotated[bool, typer.Option("--valset-changes", help="Governance adds the spare node (an "
                                                 "observer until then), changes a power and removes a validator "
                                                 "during the run (H+2 rule; equal powers).")] = False,
    early_valsets: Annotated[str, typer.Option(help="Negative control: these node indices (comma-separated) apply "
                                                    "a validator-set change at H+1; violations expected.")] = "",
    trace: Annotated[bool, typer.Option("--trace", help="Print the trace tail even when the run passes.")] = False,
    show_failures: Annotated[int, typer.Option(help="Failing seeds reported in full in a sweep.")] = 3,
) -> None:
    """Run N real consensus cores under a seeded network, crashes and Byzantine validators; check invariants."""
    from qilian.sim import SimConfig, parse_behaviours, parse_faults, run_simulation
    from qilian.sim.config import DEFAULT_CHAOS_TICKS, DEFAULT_LIVENESS_BOUND
    from qilian.sim.sweep import run_sweep

    logging.getLogger("qilian").setLevel(logging.CRITICAL + 1)  # the shells' own logs; the report is below
    if crash_sweep > 0:
        crash_every = crash_every or 600
        sweep = sweep or 1_000_000
    try:
        cfg = SimConfig(seed=seed, nodes=nodes, byzantine=byzantine, heights=heights, faults=parse_faults(faults),
                        behaviours=parse_behaviours(behaviours), weighted=weighted,
                        chaos_ticks=DEFAULT_CHAOS_TICKS if chaos_ticks is None else chaos_ticks,
                        liveness_bound_ticks=DEFAULT_LIVENESS_BOUND if liveness_bound is None else liveness_bound,
                        allow_unsafe=allow_unsafe, amnesia=amnesia, crash_every=crash_every,
                        valset_changes=valset_changes,
                        early_valsets=tuple(int(i) for i in early_valsets.split(",") if i.strip()))
        if sweep <= 0:
            from qilian.sim.world import World

            World(cfg)  # validates the Byzantine power before the clock starts
    except (AssertionError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    if sweep <= 0:
        t0 = time.perf_counter()
        r = run_simulation(cfg)
        elapsed = time.perf_counter() - t0
        _print_run(r, elapsed)
        if r.violations or trace:
            _print_failure(r, show_trace=True, violations=bool(r.violations))
        raise typer.Exit(1 if r.violations else 0)

    deadline = time.monotonic() + time_box if time_box > 0 else None
    reported = 0
    t0 = time.perf_counter()
    with Progress(TextColumn("sim sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[bad]} failing"), console=err, transient=True) as progress:
        task = progress.add_task("sweep", total=None if crash_sweep else sweep, bad=0)
        failing = 0
        crashes = 0

        def on_result(r: object) -> None:
            nonlocal reported, failing, crashes
            from qilian.sim import SimResult

            assert isinstance(r, SimResult)
            crashes += r.probes.get("crash points", 0)
            progress.advance(task)
            if r.violations:
                failing += 1
                progress.update(task, bad=failing)
                kinds = sorted({v.kind for v in r.violations})
                progress.console.print(f"FAIL seed {r.config.seed}: {', '.join(kinds)}")
                if reported < show_failures:
                    reported += 1
                    _print_failure(r, show_trace=True, violations=True, out=progress.console)

        def should_stop() -> bool:
            return (deadline is not None and time.monotonic() > deadline) or (0 < crash_sweep <= crashes)

        try:
            summary = run_sweep(cfg, range(seed, seed + sweep), on_result, should_stop)
        except ValueError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    elapsed = time.perf_counter() - t0
    rate = summary.seeds / elapsed if elapsed > 0 else 0.0
    console.print(f"qilian sim sweep: seeds {seed}..{seed + summary.seeds - 1} ({summary.seeds} seeds), "
                  f"nodes {nodes}, byzantine {byzantine}, faults {faults}, behaviours {behaviours}"
                  f"{', weighted' if weighted else ''}")
    console.print(f"  {summary.seeds} seeds in {elapsed:.1f} s = {rate:.1f} seeds/s; {summary.events:,} events "
                  f"({summary.events / elapsed if elapsed else 0:,.0f}/s)")
    console.print(f"  heights decided {summary.heights:,}; max decision round {summary.max_round}; messages "
                  f"{summary.messages:,}; worst heal→commit {summary.max_liveness_ticks} ticks "
                  f"(bound {cfg.liveness_bound_ticks})")
    console.print(f"  crash points {summary.crash_points:,} (crashes before a numbered durable operation: WAL write, "
                  f"WAL fsync, WAL truncate, signer-state save, block store)")
    probes = ", ".join(f"{k} {v:,}" for k, v in summary.probes.items())
    console.print(f"  probes: {probes}")
    silent = summary.get_silent_probes()
    if silent:
        console.print(f"  probes that never fired: {', '.join(silent)}")
    if summary.failed:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.violations.items()))
        console.print(f"  [red]violations in {len(summary.failed)} seeds[/red]: {kinds}; failing seeds: "
                      f"{' '.join(str(r.config.seed) for r in summary.failed[:50])}")
        raise typer.Exit(1)
    console.print("  violations: 0")


def _print_run(r: object, elapsed: float) -> None:
    from qilian.sim import SimResult

    assert isinstance(r, SimResult)
    cfg = r.config
    roles = " ".join(f"{i}:{role}" for i, role in enumerate(r.roles))
    console.print(f"qilian sim seed {cfg.seed}: {cfg.nodes} validators (powers {list(r.powers)}), byzantine "
                  f"{cfg.byzantine}; nodes {roles}")
    live = "not reached" if r.liveness_ticks is None else f"{r.liveness_ticks} ticks"
    console.print(f"  heights decided {r.heights}; max decision round {r.max_round}; messages {r.messages:,} "
                  f"(delivered {r.delivered:,}); events {r.events:,}; simulated {r.ticks:,} ticks; heal at "
                  f"{r.heal_tick}, heal→commit {live}; {elapsed * 1000:.0f} ms")
    console.print("  probes: " + ", ".join(f"{k} {v}" for k, v in r.probes.items()))
    console.print(f"  trace hash {r.trace_hash}")
    console.print(f"  violations: {len(r.violations)}")


def _print_failure(r: object, show_trace: bool, violations: bool, out: Console | None = None) -> None:
    from qilian.sim import SimResult
    from qilian.sim.sweep import format_replay_command

    assert isinstance(r, SimResult)
    out = out or console
    if violations:
        out.print(f"[red]seed {r.config.seed} broke {len(r.violations)} invariant(s)[/red]")
        for v in r.violations[:10]:
            out.print(f"  {v.kind} at tick {v.tick} (node {v.node}): {v.detail}")
        out.print(f"  replay: {format_replay_command(r.config)} --trace")
        out.print(f"  trace hash {r.trace_hash}")
    if show_trace:
        out.print(f"  last {len(r.trace_tail)} trace lines (tick node<from message | node event):")
        for line in r.trace_tail:
            out.print(f"    {line}")
