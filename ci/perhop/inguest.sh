#!/bin/bash
# inguest.sh OUTDIR BIN N CASE...: runs in guest 1 of a two-guest SoftRoCE run
# (ci/softroce/run --hosts 2 --peer-ready none -- inguest.sh ...). For each
# CASE (pt-event pt-busy qp-event qp-busy, suffix +trace to trace it with
# trace.sh in both guests) runs the 64 B ping-pong: perftest's ib_send_lat
# (server in guest 2) or qp's BenchmarkSendLatency/cm (echo helper in guest 2),
# N iterations, and keeps the traces as OUTDIR/CASE-g1.trace, -g2.trace.
set -u
out=$1 bin=$2 n=$3
shift 3
here=$(dirname "$0")
peer=$RDMABIND_SOFTROCE_PEER_EXEC
server=$RDMABIND_SOFTROCE_PEER
sh=$RDMABIND_SOFTROCE_SHARED
mkdir -p "$out"
echo "# guest: $(uname -r) vCPUs $(nproc) btf: $([[ -e /sys/kernel/btf/vmlinux ]] && echo yes || echo no) clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) GOMAXPROCS=${GOMAXPROCS:-}"
for c in "$@"; do
	tr=0
	[[ $c == *+trace ]] && tr=1
	c=${c%+trace}
	# CASE[:VAR=VAL,VAR=VAL]: extra environment for qp's benchmark (both sides)
	name=${c%%:*}
	envs=()
	[[ $c == *:* ]] && IFS=, read -ra envs <<<"${c#*:}"
	tag=$(tr -c 'A-Za-z0-9_.=-' _ <<<"$c" | sed 's/_$//')
	if ((tr)); then
		$peer env BUF_KB=16384 "$here/trace.sh" on
		"$here/trace.sh" on
	fi
	case $name in
	gran=*) # the scheduler's wakeup granularity in both guests (CFS, 6.1; debugfs)
		g=${name#gran=}
		cmd="mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug; echo $g >/sys/kernel/debug/sched/wakeup_granularity_ns; cat /sys/kernel/debug/sched/wakeup_granularity_ns"
		echo "$c: guest1 $(sh -c "$cmd") guest2 $($peer sh -c "$cmd")"
		continue
		;;
	pt-event | pt-busy)
		e=""
		[[ $name == pt-event ]] && e=-e
		id=$($peer --detach ib_send_lat -d rxe0 -x 1 -s 64 -n "$n" -F $e)
		sleep 2
		res=$(timeout ${PT_TIMEOUT:-60} ib_send_lat -d rxe0 -x 1 -s 64 -n "$n" -F $e "$server" 2>&1 | awk '$1 ~ /^[0-9]+$/ && NF >= 5 { line = $0 } END { print line }')
		# a hung server (perftest hangs now and then here) must not hang the run
		timeout 20 $peer --wait "$id" >/dev/null 2>&1 || { $peer --signal "$id" KILL >/dev/null 2>&1; timeout 10 $peer --wait "$id" >/dev/null 2>&1; }
		echo "$c$( ((tr)) && echo +trace): ib_send_lat $e: $res"
		;;
	qp-event | qp-busy)
		spin=-1ns
		[[ $name == qp-busy ]] && spin=${QP_BUSY_SPIN:-20ms}
		b=$bin
		for e in "${envs[@]}"; do [[ $e == QPBIN=* ]] && b=${e#QPBIN=}; done
		res=$(env "${envs[@]}" RDMABIND_QP_SPIN=$spin "$b" -test.run '^$' -test.bench 'BenchmarkSendLatency/cm' -test.benchtime "${n}x" 2>&1 | grep -E '^(Benchmark|FAIL|---|panic)')
		echo "$c$( ((tr)) && echo +trace): qp spin=$spin: $res"
		;;
	esac
	if ((tr)); then
		"$here/trace.sh" off "$out/$tag-g1.trace"
		$peer "$here/trace.sh" off "$sh/$tag-g2.trace"
		cp "$sh/$tag-g2.trace" "$out/$tag-g2.trace"
	fi
done
sync
