#!/usr/bin/env python3
"""cpushare.py TRACE: on-CPU time per task (comm-pid) from sched_switch, per CPU, over the trace."""
import re, sys, collections
LINE = re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+):\s+sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*==> next_comm=(.*?) next_pid=(\d+)')
last = {}; cur = {}; tot = collections.Counter(); t0 = t1 = None
for l in open(sys.argv[1], errors='replace'):
    m = LINE.match(l)
    if not m: continue
    cpu, ts = int(m.group(3)), float(m.group(4))
    t0 = ts if t0 is None else t0; t1 = ts
    if cpu in last:
        tot[f'{m.group(5)}-{m.group(6)}'] += ts - last[cpu]
    last[cpu] = ts
span = (t1 - t0) * len(last)
for k, v in tot.most_common(8):
    print(f'{k:28s} {v*1e3:9.1f} ms  {100*v/span:5.1f}% of {len(last)} CPU(s) x {t1-t0:.2f} s')
