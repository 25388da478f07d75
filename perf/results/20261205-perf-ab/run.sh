#!/bin/bash
# Interleaved A/B: base (main) vs branch, io_uring inline off/on, threads.
W=randread-4k-qd16,randwrite-4k-qd16-overwrite,seqread-1m-qd4,seqwrite-1m-qd4
COMMON="--quick --modes none --workloads $W --servers nbdqcow,qemu-nbd --rounds 1 --runtime 2s"
for it in 1 2; do
  /tmp/perf-base/perf/e2e $COMMON --nbdqcow-aio io_uring --out /tmp/perf-ab/base-iou-$it > /tmp/perf-ab/base-iou-$it.log 2>&1
  NBDQCOW_IO_URING_INLINE_COMPLETIONS=0 /work/wt-perf/perf/e2e $COMMON --nbdqcow-aio io_uring --out /tmp/perf-ab/br-iou0-$it > /tmp/perf-ab/br-iou0-$it.log 2>&1
  /work/wt-perf/perf/e2e $COMMON --nbdqcow-aio io_uring --out /tmp/perf-ab/br-iou1-$it > /tmp/perf-ab/br-iou1-$it.log 2>&1
  /tmp/perf-base/perf/e2e $COMMON --nbdqcow-aio threads --out /tmp/perf-ab/base-thr-$it > /tmp/perf-ab/base-thr-$it.log 2>&1
  /work/wt-perf/perf/e2e $COMMON --nbdqcow-aio threads --out /tmp/perf-ab/br-thr-$it > /tmp/perf-ab/br-thr-$it.log 2>&1
done
echo done > /tmp/perf-ab/DONE
