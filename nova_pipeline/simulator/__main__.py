"""`python -m nova_pipeline.simulator`: serve the fake NovaConnect API until interrupted."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys

from nova_pipeline.simulator.app import Simulator, SimulatorConfig, SimulatorHTTPServer
from nova_pipeline.simulator.dataset import FleetSpec
from nova_pipeline.simulator.faults import FAULTS, parse_fault_spec


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nova_pipeline.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sims", type=int, default=500)
    p.add_argument("--groups", type=int, default=6, help="group ids are 1..N")
    p.add_argument("--events-per-sim-day", type=float, default=20.0)
    p.add_argument("--timezone", default="Asia/Almaty", help="the provider's reporting day")
    p.add_argument(
        "--now",
        type=dt.datetime.fromisoformat,
        default=None,
        help="freeze the provider's clock (ISO datetime with offset)",
    )
    p.add_argument("--sync-hour", type=int, default=4, help="local hour of the daily sync")
    p.add_argument("--token", default=None, help="require `Authorization: Bearer TOKEN`")
    p.add_argument("--max-page-size", type=int, default=1000)
    p.add_argument("--faults", default="", help=f"comma-separated, of: {', '.join(FAULTS)}")
    p.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="NAME=RATE",
        help="override one fault's rate (0..1); repeatable",
    )
    p.add_argument("--retry-after", type=int, default=1, help="seconds sent with a 429")
    p.add_argument("--slow-seconds", type=float, default=30.0, help="hold of a slow response")
    args = p.parse_args(argv)
    if args.now is not None and args.now.tzinfo is None:
        p.error("--now needs an offset, e.g. 2026-11-20T06:00:00+05:00")
    try:
        args.fault_rates = parse_fault_spec(args.faults, args.fault_rate)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    config = SimulatorConfig(
        fleet=FleetSpec(
            seed=args.seed,
            sims=args.sims,
            groups=args.groups,
            events_per_sim_day=args.events_per_sim_day,
            timezone=args.timezone,
            sync_hour=args.sync_hour,
        ),
        now=args.now,
        token=args.token,
        max_page_size=args.max_page_size,
        faults=args.fault_rates,
        retry_after=args.retry_after,
        slow_seconds=args.slow_seconds,
    )
    try:
        server = SimulatorHTTPServer(Simulator(config), args.host, args.port)
    except OSError as exc:
        sys.exit(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror}. Is a simulator already "
            "running there? Choose another port (--port, `make simulator PORT=...`; 0 picks a "
            "free one)"
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        f"NovaConnect simulator serving {server.api_url}/report/call_sms "
        f"({args.sims} SIMs, {args.groups} groups, seed {args.seed})",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
