import re,sys,statistics as st
rows={}
for f in sys.argv[1:]:
    for line in open(f):
        m=re.match(r"(\S+)\s+\S+\s+writeback\s+(\S+)\s+bs=(\S+) qd=(\S+) ops=\d+ cpu_us/op=\s*([\d.]+) iops=\s*(\d+)",line)
        if not m: continue
        who,rw,bs,qd,cpu,iops=m.groups()
        key=f"{rw} {bs} qd{qd}"
        rows.setdefault(key,{}).setdefault(who,[]).append((float(cpu),int(iops)))
for key,d in rows.items():
    out=[key]
    for who,v in d.items():
        out.append(f"{who}: cpu {'/'.join(f'{c:.0f}' for c,_ in v)} (med {st.median(c for c,_ in v):.1f}) iops med {st.median(i for _,i in v):.0f}")
    print(" | ".join(out))
