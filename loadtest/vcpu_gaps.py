"""How often this machine takes a CPU away from a running thread.

One busy thread is pinned to each CPU for SECS seconds and records every
gap of 0.5 ms or more between two of its clock reads: time it was not
running (the hypervisor ran something else, or the guest kernel did).
A request in flight on that CPU waits out the gap, so on an otherwise idle
machine this is the floor under any latency tail the benchmark measures.
bench.sh runs it before it starts the server and prints the figures.

    python3 loadtest/vcpu_gaps.py [SECS]

The last line is machine-readable: `gaps_ge_2ms=N max_gap_ms=X
share_in_gaps_ge_2ms=P` (over all CPUs; P in percent of the time).
"""

import collections
import multiprocessing
import os
import sys
import time

THRESHOLDS_MS = (1, 2, 5, 10)


def spin(cpu, secs, results):
    os.sched_setaffinity(0, {cpu})
    end = time.perf_counter() + secs
    last = time.perf_counter()
    gaps = []
    while last < end:
        now = time.perf_counter()
        if now - last >= 0.0005:
            gaps.append(now - last)
        last = now
    results.put((cpu, gaps))


def steal_ticks():
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8])


def main():
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    if not secs >= 1:
        sys.exit("vcpu_gaps.py: SECS must be at least 1")
    cpus = sorted(os.sched_getaffinity(0))
    results = multiprocessing.Queue()
    steal_before = steal_ticks()
    workers = [multiprocessing.Process(target=spin, args=(cpu, secs, results)) for cpu in cpus]
    for worker in workers:
        worker.start()
    gaps_by_cpu = dict(results.get() for _ in workers)
    for worker in workers:
        worker.join()
    steal = (steal_ticks() - steal_before) / os.sysconf("SC_CLK_TCK")
    total_ge_2 = 0
    time_ge_2 = 0.0
    worst = 0.0
    for cpu in cpus:
        gaps = gaps_by_cpu[cpu]
        counts = collections.Counter(t for g in gaps for t in THRESHOLDS_MS if g * 1000 >= t)
        long_gaps = [g for g in gaps if g >= 0.002]
        total_ge_2 += len(long_gaps)
        time_ge_2 += sum(long_gaps)
        worst = max(worst, max(gaps, default=0.0))
        print(
            f"cpu{cpu}: gaps >= {'/'.join(map(str, THRESHOLDS_MS))} ms: "
            f"{'/'.join(str(counts[t]) for t in THRESHOLDS_MS)}, "
            f"longest {max(gaps, default=0.0) * 1000:.1f} ms, "
            f"not running {sum(gaps) / secs * 100:.2f}% of the time"
        )
    print(f"steal time over {secs:.0f} s: {steal:.2f} CPU-seconds")
    share = time_ge_2 / (secs * len(cpus)) * 100
    print(f"gaps_ge_2ms={total_ge_2} max_gap_ms={worst * 1000:.1f} share_in_gaps_ge_2ms={share:.2f}")


if __name__ == "__main__":
    main()
