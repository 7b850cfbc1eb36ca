#!/usr/bin/env python3
"""Opens N plain HTTP/1.1 keep-alive connections, completes one request on each, holds them.

Usage: idle_client.py HOST PORT PATH N [--parallel P] [--open-timeout S] [--hold S]

Prints one line "ready ok=K failed=F seconds=T" on stdout when every connection has been
tried, then holds the open ones until SIGTERM/SIGINT or --hold seconds pass, and exits 0. Bounded: each connection gets --open-timeout
seconds for connect + request + response; the whole open phase gets N * that / P + 10 s.
"""
import argparse
import asyncio
import resource
import signal
import time


async def one(host, port, path, timeout, sem, held):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except Exception:
            return False
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: good.test\r\nUser-Agent: tgb-idle\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            if not head.startswith(b"HTTP/1.1 200"):
                writer.close()
                return False
        except Exception:
            writer.close()
            return False
        held.append(writer)
        return True


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("n", type=int)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--open-timeout", type=float, default=10.0)
    ap.add_argument("--hold", type=float, default=120.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, a.n + 100))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    held = []
    sem = asyncio.Semaphore(a.parallel)
    t0 = time.monotonic()
    budget = a.n * a.open_timeout / max(1, a.parallel) + 10
    tasks = [asyncio.ensure_future(one(a.host, a.port, a.path, a.open_timeout, sem, held)) for _ in range(a.n)]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    for t in pending:
        t.cancel()
    ok = sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
    print(f"ready ok={ok} failed={a.n - ok} seconds={time.monotonic() - t0:.1f}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), a.hold)
    except asyncio.TimeoutError:
        pass
    for w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
