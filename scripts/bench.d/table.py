"""Turns wrk RESULT lines ("name RESULT k=v ...") into a table with ratios."""
import re
import sys

rows = {}
for line in sys.stdin:
    if " RESULT " not in line:
        continue
    name, rest = line.split(" RESULT ")
    rows[name] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}
base = rows[sys.argv[1]]["rps"]
width = max([22] + [len(n) + 2 for n in rows])
print(f"{'scenario':<{width}}{'req/s':>10}{'p50 us':>9}{'p99 us':>9}{'non-2xx':>9}{'vs baseline':>13}")
for name, r in rows.items():
    print(f"{name:<{width}}{r['rps']:>10}{r['p50_us']:>9}{r['p99_us']:>9}{r['non2xx']:>9}{r['rps'] / base:>12.2f}x")
