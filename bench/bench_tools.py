"""How long the tool box takes to run a command tool that does nothing (/bin/true), from
`Toolbox.call` to its outcome: argument parsing and schema check, the program's start in
a session of its own, stdin, the pipes read to their end, the exit status.

Goal: median <= 20 ms on the 2-core development machine (the model waits for this
before it can answer). A bare asyncio spawn of /bin/true is measured in the same run,
so what the tool box adds shows whatever the machine's load.
Run: .venv/bin/python bench/bench_tools.py [--calls N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from pivoicectl.realtime.tools import load_toolbox

GOAL_MS = 20.0


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


async def _tool_calls(calls: int) -> list[float]:
    box = load_toolbox(
        {
            "builtin_tools": [],
            "tools": [
                {
                    "name": "nothing",
                    "command": ["/bin/true"],
                    "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
                }
            ],
        },
        dict(os.environ),
    )
    out = []
    for i in range(calls):
        outcome = await box.call("nothing", f'{{"n": {i}}}')
        assert outcome.ok, outcome.error
        out.append(outcome.duration_s * 1000)
    await box.aclose()
    return out


async def _bare_spawns(calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("/bin/true")
        await proc.wait()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def _main(calls: int) -> None:
    await _tool_calls(3)  # warm: imports, the page cache
    tool = await _tool_calls(calls)
    bare = await _bare_spawns(calls)
    med = statistics.median(tool)
    print(f"command tool /bin/true, {calls} calls, call() to outcome:")
    print(f"  tool box:         median {med:.2f} ms, p90 {_p90(tool):.2f} ms")
    print(f"  bare async spawn: median {statistics.median(bare):.2f} ms, p90 {_p90(bare):.2f} ms")
    verdict = "OK" if med <= GOAL_MS else "OVER GOAL"
    print(f"goal: median <= {GOAL_MS:.0f} ms -> {med:.2f} ms: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="10 calls (the smoke test's run)")
    args = ap.parse_args()
    asyncio.run(_main(10 if args.quick else args.calls))


if __name__ == "__main__":
    main()
