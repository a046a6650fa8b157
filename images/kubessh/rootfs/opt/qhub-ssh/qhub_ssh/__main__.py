"""Run the gateway: python -m qhub_ssh [--config /etc/qhub-ssh/config.json]."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .config import Settings
from .server import Gateway


def main() -> None:
    parser = argparse.ArgumentParser(prog="qhub-ssh", description=__doc__)
    parser.add_argument("--config", help="settings file (default $QHUB_SSH_CONFIG or /etc/qhub-ssh/config.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.load(args.config)

    async def run():
        gateway = Gateway(settings)
        await gateway.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await gateway.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
