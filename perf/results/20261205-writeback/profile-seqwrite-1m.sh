#!/usr/bin/env bash
# prof.sh BIN OUT: perf record -g of the server during 1 MiB seq writes QD4 writeback (threads)
bin=$1 out=$2
d=$(mktemp -d /var/tmp/wb-prof-XXXX); cp /var/tmp/ab-data.qcow2 $d/img.qcow2
port=$((20000 + RANDOM % 10000))
DOTNET_PerfMapEnabled=1 $bin serve $d/img.qcow2 --listen 127.0.0.1:$port --cache writeback --aio threads > $d/log 2>&1 & pid=$!
sleep 3
fio --name=w --ioengine=nbd --uri=nbd://127.0.0.1:$port/ --rw=write --bs=1M --iodepth=4 --size=256m --loops=4 --output-format=terse >/dev/null
perf record -g -F 999 -p $pid -o $d/perf.data -- sleep 6 >/dev/null 2>&1 & ppid=$!
fio --name=w --ioengine=nbd --uri=nbd://127.0.0.1:$port/ --rw=write --bs=1M --iodepth=4 --size=256m --loops=40 --runtime=6 --time_based --output-format=terse | cut -d';' -f49,50 
wait $ppid
perf report -i $d/perf.data --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12 > $out
echo "---- symbols" >> $out
perf report -i $d/perf.data --no-children --sort sym --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -25 >> $out
kill $pid; wait $pid; rm -rf $d
