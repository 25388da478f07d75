#!/usr/bin/env bash
# BIN OUT: perf record of allocating 4k randwrite QD16 writeback
bin=$1 out=$2; shift 2
d=$(mktemp -d /var/tmp/wb-prof-XXXX); cp /var/tmp/ab-empty.qcow2 $d/img-empty.qcow2
port=$((20000 + RANDOM % 10000))
DOTNET_PerfMapEnabled=1 $bin serve $d/img-empty.qcow2 --listen 127.0.0.1:$port --cache writeback "$@" > $d/log 2>&1 & pid=$!
sleep 3
fio --name=w --ioengine=nbd --uri=nbd://127.0.0.1:$port/ --rw=randwrite --bs=4k --iodepth=16 --size=32g --number_ios=20000 --output-format=terse >/dev/null
perf record -g -F 999 -p $pid -o $d/perf.data -- sleep 8 >/dev/null 2>&1 & ppid=$!
fio --name=w --ioengine=nbd --uri=nbd://127.0.0.1:$port/ --rw=randwrite --bs=4k --iodepth=16 --size=32g --runtime=8 --time_based --output-format=json | python3 -c "import json,sys;d=sys.stdin.read();j=json.loads(d[d.index('{'):])['jobs'][0];print('iops',round(j['write']['iops']))" > $out
wait $ppid
perf report -i $d/perf.data --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12 >> $out
echo "---- symbols" >> $out
perf report -i $d/perf.data --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -40 >> $out
kill $pid; wait $pid; rm -rf $d
