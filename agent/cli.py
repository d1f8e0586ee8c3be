"""`vdi-agent`: report this host's load and desktops to the broker.

vdi-agent run --broker URL --token-file FILE [options]
vdi-agent once [options]      # print one report as JSON and exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent import __version__
from agent.config import HYPERVISORS, LOG_LEVELS, ConfigError, load_config

log = logging.getLogger("agent")
T = TypeVar("T")


def _common_options() -> argparse.ArgumentParser:
    # Every default is None, so that a value from --config is only overridden by an
    # option actually given; the real defaults are in agent.config.AgentConfig.
    common = argparse.ArgumentParser(add_help=False)
    add = common.add_argument
    add("--config", type=Path, metavar="FILE.toml", help="settings file (TOML)")
    add("--hypervisor", choices=HYPERVISORS, help="where desktops come from (default libvirt)")
    add("--libvirt-uri", metavar="URI", help="libvirt connection (default qemu:///system)")
    add(
        "--console-address",
        metavar="IP",
        help="where the gateway reaches consoles listening on all interfaces"
        " (default: this host's address towards the broker)",
    )
    add("--static-desktops", type=Path, metavar="FILE", help="TOML list of static desktops")
    add("--simulated-desktops", type=int, metavar="N", help="number of simulated desktops")
    add("--simulated-protocol", choices=("rdp", "vnc"), help="console protocol they speak")
    add("--simulated-latency", type=float, metavar="S", help="delay before they answer")
    add("--simulated-hang", type=int, metavar="N", help="the first N never answer")
    add("--simulated-boot-delay", type=float, metavar="S", help="time in starting/stopping")
    add("--pool", help="pool for desktops that do not name their own")
    add("--interval", type=float, metavar="SECONDS", help="report interval until the broker says")
    add("--host-name", metavar="NAME", help="this host's name at the broker (default: hostname)")
    add("--state-dir", type=Path, metavar="DIR", help="where seq and counters are kept")
    add("--probe-timeout", type=float, metavar="S", help="console probe timeout (default 2)")
    add("--capacity", type=int, metavar="N", help="most desktops this host should run at once")
    add("--log-level", type=str.upper, choices=LOG_LEVELS, help="default INFO")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vdi-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"vdi-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    run = commands.add_parser("run", parents=[common], help="report to the broker until stopped")
    run.add_argument("--broker", metavar="URL", help="the broker's base URL")
    run.add_argument("--token-file", type=Path, metavar="FILE", help="file holding the token")
    run.add_argument("--metrics-port", type=int, metavar="PORT", help="serve vdi_agent_* metrics")
    run.add_argument("--metrics-address", metavar="IP", help="metrics address (127.0.0.1)")
    commands.add_parser("once", parents=[common], help="print one report as JSON and exit")
    return parser


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed: the agent's cycle is mostly event loop
    work (a connection per desktop probe), which uvloop does in C for about a
    third less CPU time (bench/bench_agent.py). asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _checked_json(report: dict[str, object]) -> str:
    # The printed report is checked against the contract; pydantic is loaded only
    # here, never in the long-running agent.
    from agent.protocol import Report

    Report.model_validate(report)
    return json.dumps(report, indent=2, ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, vars(args))
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging(config.log_level.upper())
    # Imported here: the runner brings the collectors and asyncio machinery,
    # which `--help` does not need.
    from agent.http import parse_url
    from agent.hypervisors.base import HypervisorError
    from agent.hypervisors.static import StaticListError
    from agent.reporter import TokenError
    from agent.runner import MetricsUnavailable, serve, snapshot
    from agent.state import StateInUse

    try:
        if args.command == "once":
            print(_checked_json(run_event_loop(snapshot(config))))
            return 0
        if config.broker is None or config.token_file is None:
            parser.error("run needs --broker URL and --token-file FILE (or both in --config)")
        try:
            parse_url(config.broker)
        except ValueError as exc:
            parser.error(f"--broker: {exc}")
        run_event_loop(serve(config))
    except (HypervisorError, StaticListError, TokenError, MetricsUnavailable, StateInUse) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
