"""`python -m tests.flood BASE_URL CLIENTS PATH…`: CLIENTS clients each looping GETs over PATHs until SIGTERM.

Health traffic at its worst (a misconfigured scraper, a probe storm), from a process of its own so that the
daemon under test has its event loop to itself. Prints the number of answers by status when it stops.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from collections import Counter

import aiohttp


async def client(http: aiohttp.ClientSession, urls: list[str], seen: Counter[int]) -> None:
    for url in itertools.cycle(urls):
        try:
            async with http.get(url) as response:
                await response.read()
                seen[response.status] += 1
        except (aiohttp.ClientError, OSError):
            seen[0] += 1
            await asyncio.sleep(0.05)


async def flood(base: str, clients: int, paths: list[str]) -> Counter[int]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    seen: Counter[int] = Counter()
    urls = [base + path for path in paths]
    connector = aiohttp.TCPConnector(limit=0, resolver=aiohttp.ThreadedResolver())
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        tasks = [asyncio.create_task(client(http, urls, seen)) for _ in range(clients)]
        print("flooding", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return seen


if __name__ == "__main__":
    answered = asyncio.run(flood(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
    print(dict(answered), flush=True)
