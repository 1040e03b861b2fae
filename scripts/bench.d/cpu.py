"""Where the CPU went: microseconds of CPU per request, of the server under
test and of the database (audit inserts), for a baseline and some scenarios.
Explains a throughput ratio: the database shares the machine's two cores."""
import re
import sys

TICK_US = 10_000  # /proc clock ticks are 1/100 s

rows = {}
for line in sys.stdin:
    if " RESULT " in line:
        name, rest = line.split(" RESULT ")
        rows[name] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}


def per_request(r, key):
    requests = r["rps"] * r["seconds"]
    return r[key] * TICK_US / requests if requests else float("nan")


base, names = sys.argv[1], sys.argv[2:]
if base not in rows or "server_cpu_ticks" not in rows[base]:
    sys.exit(0)
b = per_request(rows[base], "server_cpu_ticks")
print(f"CPU per request (server's own, then the database's): {base} {b:.1f} us")
for n in names:
    if n not in rows:
        continue
    s = per_request(rows[n], "server_cpu_ticks")
    d = per_request(rows[n], "db_cpu_ticks")
    print(f"  {n}: server {s:.1f} us ({b / s:.2f}x the baseline's cost), database {d:.1f} us")
