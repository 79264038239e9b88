#!/bin/bash
# trace.sh on | off OUT: per-hop timeline of one SoftRoCE guest with ftrace
# (tracefs), no bpftrace needed: syscalls of the verbs path (uverbs write =
# post_send doorbell / req_notify, read of the completion channel, epoll),
# scheduler wake-ups and switches, the virtio-net interrupt, the netdev
# xmit/receive tracepoints and kprobes on rxe's stages (6.1 rdma_rxe).
# Timestamps: trace_clock mono, ns resolution (one guest's clock; hops across
# guests are derived, never compared across clocks).
set -eu
T=/sys/kernel/tracing
[[ -e $T/trace ]] || mount -t tracefs nodev $T
case $1 in
on)
	echo 0 >$T/tracing_on
	echo >$T/trace
	echo mono >$T/trace_clock
	echo ${BUF_KB:-16384} >$T/buffer_size_kb
	echo >$T/set_event
	echo >$T/kprobe_events 2>/dev/null || true
	for f in rxe_rcv rxe_requester rxe_responder rxe_completer rxe_cq_post rxe_xmit_packet ib_uverbs_comp_handler; do
		echo "p:hop/$f $f" >>$T/kprobe_events
	done
	echo 1 >$T/events/hop/enable
	for e in sys_enter_write sys_exit_write sys_enter_read sys_exit_read \
		sys_enter_epoll_pwait sys_exit_epoll_pwait sys_enter_epoll_wait sys_exit_epoll_wait \
		sys_enter_ioctl sys_exit_ioctl sys_enter_futex sys_exit_futex sys_enter_poll sys_exit_poll sys_enter_ppoll sys_exit_ppoll sys_enter_clock_gettime sys_exit_clock_gettime sys_enter_nanosleep sys_enter_clock_nanosleep; do
		[[ -e $T/events/syscalls/$e ]] && echo 1 >$T/events/syscalls/$e/enable
	done
	for e in sched/sched_wakeup sched/sched_switch net/net_dev_xmit net/netif_receive_skb irq/irq_handler_entry irq/softirq_entry; do
		echo 1 >$T/events/$e/enable
	done
	echo 1 >$T/tracing_on
	;;
off)
	echo 0 >$T/tracing_on
	cat $T/per_cpu/cpu*/stats | grep -i overrun | sort | uniq -c >&2 || true
	cat $T/trace >"$2"
	echo 0 >$T/events/enable
	echo >$T/kprobe_events 2>/dev/null || true
	;;
esac
