#!/usr/bin/env python3
"""table.py DIR PT_CASE QP_CASE [QP_COMM]: a markdown table of per-hop medians
(hops.py) for perftest and qp, guest 1 (client) and guest 2 (server/echo),
plus the derived wire time (OUT of guest 1 minus TURN of guest 2)."""
import subprocess
import sys

d, pt, qp = sys.argv[1:4]
qcomm = sys.argv[4] if len(sys.argv) > 4 else 'qp.test'


def run(case, comm, g):
    out = subprocess.run(['python3', __import__('os').path.join(__import__('os').path.dirname(__file__), 'hops.py'), f'{d}/{case}-{g}.trace', comm], capture_output=True, text=True).stdout
    r = {}
    for l in out.splitlines()[1:]:
        parts = l.rsplit(None, 3) if '(n=' in l else l.rsplit(None, 1)
        if '(n=' in l:
            label, v = l[:45].strip(), float(l[45:].split()[0])
            n = int(l.split('(n=')[1].rstrip(')'))
            r[label] = (v, n)
        else:
            r[l[:45].strip()] = (float(l[45:].split()[0]), None)
    return r


R = {(k, g): run(c, comm, g) for k, c, comm in (('pt', pt, 'ib_send_lat'), ('qp', qp, qcomm)) for g in ('g1', 'g2')}
labels = []
for v in R.values():
    for l in v:
        if l not in labels:
            labels.append(l)
print(f'| hop (median) | perftest g1 | qp g1 | perftest g2 | qp g2 |')
print('|---|---|---|---|---|')


def cell(k, g, l):
    v = R[(k, g)].get(l)
    if v is None:
        return ''
    val, n = v
    if n is not None and n < 30:
        return f'({val:.0f}, n={n})'
    return f'{val:.0f}' if n is not None else f'{val:.1f}'


for l in labels:
    print(f'| {l} | {cell("pt","g1",l)} | {cell("qp","g1",l)} | {cell("pt","g2",l)} | {cell("qp","g2",l)} |')
for k in ('pt', 'qp'):
    out1 = R[(k, 'g1')]['OUT: xmit -> next rx (wire x2 + other guest)'][0]
    t2 = R[(k, 'g2')]['TURN: rx -> xmit (this guest)'][0]
    print(f'\n{k}: wire both ways (OUT g1 - TURN g2) = {out1 - t2:.0f} us', end='')
print()
