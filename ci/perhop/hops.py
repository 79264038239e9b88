#!/usr/bin/env python3
"""hops.py TRACE APPCOMM [--skip N]: per-hop medians of a 64 B ping-pong from
one guest's ftrace text (trace.sh). The same cycle is cut in both guests:

  rx    netif_receive_skb of the other side's SEND (len > 80; ACKs are 48)
  resp  rxe_responder runs for it              (rx -> resp)
  cqe   rxe_cq_post of the receive completion  (resp -> cqe)
  evt   ib_uverbs_comp_handler (event mode)    (cqe -> evt)
  wake  sched_wakeup of an app thread          (evt -> wake)
  run   sched_switch to an app thread          (wake -> run)
  ret   the app's wait returns: exit of epoll_pwait/read(count 8)/poll
  post  sys_write(count 20) entry: the post_send doorbell (uverbs write)
  xmit  net_dev_xmit of our SEND (len > 80)     (post -> xmit: rxe requester)
  out   xmit -> next rx: the wire both ways + the other guest's turnaround

turn = rx -> xmit (this guest's share of the round trip). In busy mode
there is no evt/wake/run/ret: cqe -> post is the app's poll-to-post.
Also per cycle: context switches involving the app, futex and other
syscalls of the app.
"""
import re
import statistics
import sys

LINE = re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+):\s+(.*)$')


def parse(path):
    ev = []
    with open(path, errors='replace') as f:
        for l in f:
            if l.startswith('#'):
                continue
            m = LINE.match(l)
            if not m:
                continue
            comm, pid, cpu, ts, rest = m.groups()
            ev.append((int(round(float(ts) * 1e9)), comm, int(pid), rest))
    return ev


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def main():
    path, app = sys.argv[1], sys.argv[2]
    skip = 0
    if '--skip' in sys.argv:
        skip = int(sys.argv[sys.argv.index('--skip') + 1])
    ev = parse(path)
    isapp = lambda e: e[1] == app
    rxs = [i for i, e in enumerate(ev) if e[3].startswith('netif_receive_skb') and int(re.search(r'len=(\d+)', e[3]).group(1)) > 80]
    cycles = []
    for a, b in zip(rxs, rxs[1:]):
        seg = ev[a:b + 1]
        t0 = seg[0][0]
        d = {'rx': t0}

        def find(pred, start=0):
            for k in range(start, len(seg)):
                if pred(seg[k]):
                    return k
            return None
        k = find(lambda e: e[3].startswith('rxe_responder'))
        if k is None:
            continue
        d['resp'] = seg[k][0]
        k = find(lambda e: e[3].startswith('rxe_cq_post'), k)
        if k is None:
            continue
        d['cqe'] = seg[k][0]
        kc = k
        kx = find(lambda e: isapp(e) and e[3].startswith('net_dev_xmit') and int(re.search(r'len=(\d+)', e[3]).group(1)) > 80, kc)
        if kx is None:
            continue
        d['xmit'] = seg[kx][0]
        ki = find(lambda e: e[3].startswith('sched_switch') and 'next_comm=swapper' in e[3], kx)
        if ki is not None:
            d['idle'] = seg[ki][0]
        # the virtio input interrupt that brought the rx (the last one before it)
        for j in range(len(ev[:a]) - 1, max(a - 40, 0), -1):
            if ev[j][3].startswith('irq_handler_entry') and 'input' in ev[j][3]:
                d['irq'] = ev[j][0]
                break
        # the post: the last uverbs write (count 20) entry by the app before xmit
        kp = None
        for j in range(kx, kc, -1):
            e = seg[j]
            if isapp(e) and e[3].startswith('sys_write(') and 'count: 20)' in e[3]:
                kp = j
                break
        if kp is None:
            continue
        d['post'] = seg[kp][0]
        ke = find(lambda e: e[3].startswith('ib_uverbs_comp_handler'), kc)
        if ke is not None and ke < kp:
            d['evt'] = seg[ke][0]
            kw = find(lambda e: e[3].startswith('sched_wakeup') and ('comm=' + app + ' ') in e[3], ke)
            if kw is not None and kw < kp:
                d['wake'] = seg[kw][0]
                kr = find(lambda e: e[3].startswith('sched_switch') and ('next_comm=' + app + ' ') in e[3], kw)
                if kr is not None and kr < kp:
                    d['run'] = seg[kr][0]
                    kt = find(lambda e: isapp(e) and (e[3].startswith('sys_epoll_pwait -> 0x1') or e[3].startswith('sys_read -> 0x8') or e[3].startswith('sys_epoll_wait -> 0x1') or e[3].startswith('sys_poll -> 0x1')), kr)
                    if kt is not None and kt < kp:
                        d['ret'] = seg[kt][0]
                        krd = find(lambda e: isapp(e) and e[3].startswith('sys_read(') and 'count: 8)' in e[3], kt)
                        if krd is not None and krd < kp:
                            d['rdent'] = seg[krd][0]
                            d['dance_csw'] = sum(1 for e in seg[kt:krd] if e[3].startswith('sched_switch'))
                        # The app's completion read (count 8) after ret, if any
                        kre = find(lambda e: isapp(e) and e[3].startswith('sys_read -> 0x8'), kt)
                        if kre is not None and kre < kp:
                            d['cqread'] = seg[kre][0]
        # counters over the whole cycle
        d['csw'] = sum(1 for e in seg if e[3].startswith('sched_switch') and (('prev_comm=' + app + ' ') in e[3] or ('next_comm=' + app + ' ') in e[3]))
        d['futex'] = sum(1 for e in seg if isapp(e) and e[3].startswith('sys_futex('))
        d['sysc'] = sum(1 for e in seg if isapp(e) and e[3].startswith('sys_') and '->' not in e[3])
        d['next'] = ev[b][0]
        cycles.append(d)
    cycles = cycles[skip:]
    # Keep the steady state: the longest stretch of the last run (drop
    # setup); cycles longer than 50 ms are pauses between phases.
    cycles = [d for d in cycles if d['next'] - d['rx'] < 50e6]
    n = len(cycles)

    def hop(a, b, label):
        xs = [(d[b] - d[a]) / 1e3 for d in cycles if a in d and b in d]
        return label, len(xs), med(xs)
    rows = [
        hop('rx', 'resp', 'rx -> rxe_responder'),
        hop('resp', 'cqe', 'responder -> recv CQE posted'),
        hop('cqe', 'evt', 'CQE -> comp_handler (event)'),
        hop('evt', 'wake', 'comp_handler -> wakeup of app'),
        hop('wake', 'run', 'wakeup -> app on CPU'),
        hop('run', 'ret', 'on CPU -> wait syscall returns'),
        hop('ret', 'rdent', 'wait returned -> comp-channel read entered'),
        hop('rdent', 'cqread', 'comp-channel read (syscall)'),
        hop('ret', 'cqread', 'wait returned -> comp-channel read done'),
        hop('ret', 'post', 'wait returned -> post_send write'),
        hop('cqread', 'post', 'comp read done -> post_send write'),
        hop('cqe', 'post', 'CQE -> post_send write (app total)'),
        hop('post', 'xmit', 'post_send write -> xmit (requester)'),
        hop('rx', 'xmit', 'TURN: rx -> xmit (this guest)'),
        hop('xmit', 'idle', 'xmit -> vCPU idle (CPU kept after send)'),
        hop('irq', 'rx', 'virtio rx irq -> netif_receive_skb'),
        hop('xmit', 'next', 'OUT: xmit -> next rx (wire x2 + other guest)'),
        hop('rx', 'next', 'CYCLE: rx -> next rx (round trip)'),
    ]
    print(f'# {path} app={app} cycles={n}')
    for label, k, v in rows:
        if k:
            print(f'{label:45s} {v:9.1f} us  (n={k})')
    xs = [d['dance_csw'] for d in cycles if 'dance_csw' in d]
    if xs:
        print(f'{"ctx switches, wait return -> read (median)":45s} {med(xs):9.1f}')
    for c in ('csw', 'futex', 'sysc'):
        print(f'{c + " per cycle (median)":45s} {med([d[c] for d in cycles]):9.1f}')


if __name__ == '__main__':
    main()
