import re,sys
pairs=[];cur=None
for f in sys.argv[1:]:
    for line in open(f):
        if line.startswith("== pair"): cur={}; pairs.append(cur); continue
        m=re.match(r"(\S+)\s+\S+\s+writeback\s+(\S+)\s+bs=(\S+) qd=(\S+) ops=\d+ cpu_us/op=\s*([\d.]+) iops=\s*(\d+)",line)
        if m:
            who,rw,bs,qd,cpu,iops=m.groups(); cur.setdefault(f"{rw} {bs} qd{qd}",{})[who]=(float(cpu),int(iops))
keys=list(pairs[0].keys())
for k in keys:
    print(k)
    for i,p in enumerate(pairs):
        d=p.get(k,{})
        if "base" in d and "current" in d:
            b,c=d["base"],d["current"]; q=d.get("qemu",(0,0))
            print(f"  pair {i+1}: cpu base {b[0]:.1f} cur {c[0]:.1f} (cur/base {c[0]/b[0]:.2f})  iops base {b[1]} cur {c[1]} qemu {q[1]}  cur/base {c[1]/b[1]:.2f}  base/qemu {b[1]/q[1]:.2f} cur/qemu {c[1]/q[1]:.2f}")
