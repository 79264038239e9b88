#!/usr/bin/env python3
"""dance.py TRACE COMM: what happens between the netpoller's wake (epoll_pwait -> 1)
and the completion channel read (read count 8) of the app: how many context
switches and futex calls, and how long, grouped (steady state: < 5 ms)."""
import sys, re, statistics, collections
sys.argv += []
exec(open(__import__('os').path.join(__import__('os').path.dirname(__file__), 'hops.py')).read().split("def med(")[0])
ev = parse(sys.argv[1]); app = sys.argv[2]
c = collections.Counter(); lat = collections.defaultdict(list); allv = []
i = 0
while i < len(ev):
    e = ev[i]
    if e[1] == app and e[3].startswith('sys_epoll_pwait -> 0x1'):
        j = i + 1; sw = fx = 0
        while j < len(ev) and not (ev[j][1] == app and ev[j][3].startswith('sys_read(') and 'count: 8)' in ev[j][3]):
            if ev[j][3].startswith('sched_switch'): sw += 1
            if ev[j][3].startswith('sys_futex('): fx += 1
            j += 1
        if j < len(ev) and ev[j][0] - e[0] < 5e6:
            k = 'no switch' if sw == 0 else ('2-3 switches' if sw < 4 else '4+ switches')
            c[k] += 1; lat[k].append((ev[j][0] - e[0]) / 1e3); allv.append((ev[j][0] - e[0]) / 1e3)
        i = j
    i += 1
tot = sum(c.values())
print(f'# {sys.argv[1]}: epoll wake -> completion-channel read entered, n={tot}, median {statistics.median(allv):.0f} us')
for k in ('no switch', '2-3 switches', '4+ switches'):
    if c[k]:
        print(f'  {k:14s} {100*c[k]/tot:5.1f}%  median {statistics.median(lat[k]):6.0f} us')
