"""Benchmarks that train several models run each in a child process, a few at a time (one TF
thread each is the most throughput on 2 cores, and a child's TF settings are its own)."""
from __future__ import annotations

import json
import subprocess
from typing import Callable, Hashable, Iterable


def run_children(names: Iterable[Hashable], command: Callable[[Hashable], list[str]], jobs: int,
                 report: Callable[[Hashable, dict], None] = lambda name, row: None,
                 label: Callable[[Hashable], str] = str) -> dict:
    """Runs `command(name)` for every name, at most `jobs` at once (in order; the oldest is
    waited for first). Each child prints one JSON object as its last stdout line: returns
    {name: that object}, calling `report(name, row)` as each arrives. A failing child stops the
    benchmark."""
    pending, running, rows = list(names), [], {}
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            running.append((name, subprocess.Popen(command(name), stdout=subprocess.PIPE,
                                                   text=True)))
            print(f"started: {label(name)}", flush=True)
        name, process = running.pop(0)
        stdout, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"{label(name)} failed ({process.returncode})")
        rows[name] = json.loads(stdout.strip().splitlines()[-1])
        report(name, rows[name])
    return rows
