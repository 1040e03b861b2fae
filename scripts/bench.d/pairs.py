"""Median ratio of scenario A to scenario B over the runs measured next to
each other (A, B, A-2, B-2, ...): steadier than one pair on a noisy machine."""
import re
import statistics
import sys

a, b = sys.argv[1], sys.argv[2]
rps = {}
for line in sys.stdin:
    if " RESULT " in line:
        name, rest = line.split(" RESULT ")
        rps[name] = int(re.search(r"rps=(\d+)", rest).group(1))
ratios = []
for suffix in ["", "-2", "-3", "-4", "-5"]:
    if a + suffix in rps and b + suffix in rps:
        ratios.append(rps[a + suffix] / rps[b + suffix])
if ratios:
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"{a} / {b}: median {statistics.median(ratios):.2f}x ({shown})")
