"""Run the gateway: python -m qhub_ssh [--config /etc/qhub-ssh/config.json]."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import asyncssh

from .config import Settings
from .hostkey import HostKeyError
from .server import Gateway


def main() -> None:
    parser = argparse.ArgumentParser(prog="qhub-ssh", description=__doc__)
    parser.add_argument("--config", help="settings file (default $QHUB_SSH_CONFIG or /etc/qhub-ssh/config.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # asyncssh's own INFO lines repeat client-chosen user names verbatim; the gateway logs every connection's
    # login outcome itself, with names escaped (guard.shown).
    asyncssh.set_log_level(logging.WARNING)
    try:
        settings = Settings.load(args.config)
    except (OSError, ValueError, TypeError) as e:
        sys.exit(f"qhub-ssh: bad settings: {e}")

    async def run():
        gateway = Gateway(settings)
        await gateway.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await gateway.stop()

    try:
        asyncio.run(run())
    except HostKeyError as e:
        sys.exit(f"qhub-ssh: no host key: {e}")


if __name__ == "__main__":
    main()
