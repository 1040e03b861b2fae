"""The audit writer's rounds (examples/audit_throughput): records/s with
chaining off and on per round, and the median ratio on / off."""
import re
import statistics
import sys

ratios = []
for line in sys.stdin:
    f = dict(re.findall(r"(\w+)=(\d+)", line))
    if "round" not in f:
        continue
    ratios.append(int(f["ratio_x1000"]) / 1000)
    records, off, on = int(f["records"]), int(f["off_per_sec"]), int(f["on_per_sec"])
    link = int(f["link_ns"]) / 1000
    print(f"audit writer, {records:,} records, round {f['round']}: off {off:,}/s, on {on:,}/s "
          f"(chaining alone: {link:.2f} us a record)")
shown = ", ".join(f"{r:.2f}" for r in ratios)
print(f"audit writer records/s, chaining on / off: median {statistics.median(ratios):.2f}x ({shown})")
