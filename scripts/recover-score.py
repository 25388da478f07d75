#!/usr/bin/python3
"""Scores `nbdqcow recover` block by block on real qemu-img images damaged the ways host crashes damage them.

Every written 4 KiB guest block is tagged with its guest offset, a generation and a per-run random seed. For each
layout x damage kind the script builds the image with qemu-img/qemu-io, damages a copy, runs recover, and sorts
every block whose final content is known into: in place, saved (only in lost+found), lost, or WRONG (the output
reads anything but that block's last data or zero, e.g. another offset's data or an older generation).
Prints one line per case and a table; exits 1 when any block is WRONG or an output fails `qemu-img check`.

  scripts/recover-score.py [--layouts a,b] [--damage x,y] [--nbdqcow 'CMD'] [--keep DIR] [--seed N]
"""
import argparse, json, os, random, shlex, shutil, struct, subprocess, sys, tempfile

BLOCK = 4096
MAGIC = b"NBDQBLK1"

# name -> (qemu-img -o options, compressed, extra step)
LAYOUTS = {
    "v3-64k": ("cluster_size=64k", False, None),
    "v2-64k": ("cluster_size=64k,compat=0.10", False, None),
    "v3-4k": ("cluster_size=4k", False, None),
    "v3-512": ("cluster_size=512", False, None),
    "v3-2M": ("cluster_size=2M", False, None),
    "refcount1-64k": ("cluster_size=64k,refcount_bits=1", False, None),
    "refcount64-64k": ("cluster_size=64k,refcount_bits=64", False, None),
    "extl2-64k": ("cluster_size=64k,extended_l2=on", False, None),
    "compressed-64k": ("cluster_size=64k", True, None),
    "backing-64k": ("cluster_size=64k", False, "backing"),
    "snapshot-64k": ("cluster_size=64k", False, "snapshot"),
    "deleted-snapshot-64k": ("cluster_size=64k", False, "deleted-snapshot"),
}
DAMAGE = ["lost-l1-entry", "zero-l1", "zero-l2", "zero-refcount", "truncate", "garbage-l2-sector", "l1-offset-lost",
          "misdirected-l2-sector", "lost-l2-entries"]
SIZE = 2 << 30
# Guest offsets written: a dense first MiB, and runs in later L2 tables' ranges (also for 64 KiB clusters).
RUNS = [(0, 1 << 20), (700 << 20, 256 << 10), (1536 << 20, 128 << 10), (1900 << 20, 64 << 10)]


def run(cmd, cwd, check=True):
    p = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {p.returncode}: {p.stdout}{p.stderr}")
    return p


SECTOR = 512


def tag(seed, offset, gen):
    """A 4 KiB block whose every 512-byte sector names its own guest offset (512-byte clusters split blocks)."""
    out = b""
    for sector in range(offset, offset + BLOCK, SECTOR):
        head = MAGIC + struct.pack(">QQI", seed, sector, gen)
        out += (head * (SECTOR // len(head) + 1))[:SECTOR]
    return out


def parse_tag(sector):
    if not sector.startswith(MAGIC):
        return None
    seed, offset, gen = struct.unpack(">QQI", sector[8:28])
    return seed, offset, gen


def write_blocks(path, fmt, blocks, seed, gen, cwd):
    """qemu-io writes every block from one source file (write -s), batched."""
    cmds = []
    # One source file per contiguous run keeps the command count small.
    runs, start = [], None
    for off in sorted(blocks):
        if start is not None and off == prev + BLOCK:
            prev = off
            continue
        if start is not None:
            runs.append((start, prev + BLOCK))
        start = prev = off
    runs.append((start, prev + BLOCK))
    for a, b in runs:
        run_src = os.path.join(cwd, f"run-{a}.bin")
        with open(run_src, "wb") as f:
            for off in range(a, b, BLOCK):
                f.write(tag(seed, off, gen))
        cmds += ["-c", f"write -s {run_src} {a} {b - a}"]
    run(["qemu-io", "-f", fmt, path] + cmds, cwd)


def build(layout, cwd, seed):
    """Returns (image path, {guest offset: expected block}) for the image's final content."""
    opts, compressed, extra = LAYOUTS[layout]
    expected = {}
    blocks = [off for a, n in RUNS for off in range(a, a + n, BLOCK)]
    img = os.path.join(cwd, "img.qcow2")
    if compressed:
        raw = os.path.join(cwd, "src.raw")
        with open(raw, "wb") as f:
            f.truncate(SIZE)
            for off in blocks:
                f.seek(off)
                f.write(tag(seed, off, 1))
        run(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", opts, raw, img], cwd)
        os.unlink(raw)
    elif extra == "backing":
        base = os.path.join(cwd, "base.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, base, str(SIZE)], cwd)
        write_blocks(base, "qcow2", blocks[: len(blocks) // 2], seed, 0, cwd)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, "-b", "base.qcow2", "-F", "qcow2", img], cwd)
        write_blocks(img, "qcow2", blocks, seed, 1, cwd)
    else:
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, str(SIZE)], cwd)
        write_blocks(img, "qcow2", blocks, seed, 1, cwd)
    for off in blocks:
        expected[off] = tag(seed, off, 1)
    if extra in ("snapshot", "deleted-snapshot"):
        run(["qemu-img", "snapshot", "-c", "s1", img], cwd)
        newer = blocks[::3]
        write_blocks(img, "qcow2", newer, seed, 2, cwd)
        for off in newer:
            expected[off] = tag(seed, off, 2)
        if extra == "deleted-snapshot":
            run(["qemu-img", "snapshot", "-d", "s1", "--image-opts",
                 f"driver=qcow2,file.filename={img},pass-discard-snapshot=off"], cwd)
    return img, expected


def u64(b, at):
    return struct.unpack(">Q", b[at:at + 8])[0]


def damage(img, kind, rnd):
    with open(img, "r+b") as f:
        data = bytearray(f.read())
        cluster_bits = struct.unpack(">I", data[20:24])[0]
        cs = 1 << cluster_bits
        l1_size = struct.unpack(">I", data[36:40])[0]
        l1 = u64(data, 40)
        rt = u64(data, 48)
        l2s = [u64(data, l1 + 8 * i) & 0x00FFFFFFFFFFFE00 for i in range(l1_size)]
        live = [(i, t) for i, t in enumerate(l2s) if t]
        ext = (struct.unpack(">Q", data[72:80])[0] >> 4) & 1 if struct.unpack(">I", data[4:8])[0] >= 3 else 0
        esize = 16 if ext else 8
        if kind == "lost-l1-entry":
            i, _ = live[0]
            data[l1 + 8 * i:l1 + 8 * i + 8] = bytes(8)
        elif kind == "zero-l1":
            data[l1:l1 + 8 * l1_size] = bytes(8 * l1_size)
        elif kind == "zero-l2":
            _, t = live[0]
            data[t:t + cs] = bytes(cs)
        elif kind == "zero-refcount":
            data[rt:rt + cs] = bytes(cs)
        elif kind == "truncate":
            del data[int(len(data) * 0.7) // cs * cs:]
        elif kind == "garbage-l2-sector":
            _, t = live[0]
            at = t + min(512, cs - 512)
            data[at:at + 512] = bytes(rnd.getrandbits(8) for _ in range(512))
        elif kind == "l1-offset-lost":
            data[40:48] = struct.pack(">Q", 1 << 50)
        elif kind == "misdirected-l2-sector":
            if len(live) < 2:
                return False
            (_, a), (_, b) = live[0], live[1]
            data[b:b + 512] = data[a:a + 512]
        elif kind == "lost-l2-entries":
            _, t = live[0]
            for j in range(1, min(cs // esize, 64), 7):
                data[t + j * esize:t + j * esize + 8] = bytes(8)
        f.seek(0)
        f.truncate()
        f.write(data)
    return True


def data_ranges(path):
    """(start, end) of the data regions of a sparse file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, end
            pos = end
    finally:
        os.close(fd)


def score(cwd, expected, seed):
    """Per written block: in place (every sector right), saved (every sector right or in lost+found), lost, or WRONG
    (a sector reads anything but its data or zero). Data anywhere else in the output counts as WRONG too."""
    out_raw = os.path.join(cwd, "out.raw")
    run(["qemu-img", "convert", "-O", "raw", os.path.join(cwd, "out.qcow2"), out_raw], cwd)
    saved = set()
    lost_raw = os.path.join(cwd, "out.qcow2.lost", "clusters.raw")
    if os.path.exists(lost_raw):
        with open(lost_raw, "rb") as f:
            while True:
                b = f.read(SECTOR)
                if not b:
                    break
                t = parse_tag(b)
                if t and t[0] == seed and b == tag(seed, t[1] & ~(BLOCK - 1), t[2])[t[1] % BLOCK:t[1] % BLOCK + SECTOR]:
                    saved.add((t[1], t[2]))
    counts = {"in-place": 0, "saved": 0, "lost": 0, "WRONG": 0}
    with open(out_raw, "rb") as f:
        for off, want in sorted(expected.items()):
            f.seek(off)
            got = f.read(BLOCK)
            if got == want:
                counts["in-place"] += 1
                continue
            state = "saved"
            for i in range(0, BLOCK, SECTOR):
                g, w = got[i:i + SECTOR], want[i:i + SECTOR]
                if g == w:
                    continue
                if g.strip(b"\0") != b"":
                    state = "WRONG"
                    break
                t = parse_tag(w)
                if (t[1], t[2]) not in saved:
                    state = "lost"
            counts[state] += 1
        # Anything non-zero at a block nobody wrote was invented.
        for start, end in data_ranges(out_raw):
            for block in range(start // BLOCK * BLOCK, end, BLOCK):
                if block in expected:
                    continue
                f.seek(block)
                if f.read(BLOCK).strip(b"\0") != b"":
                    counts["WRONG"] += 1
    os.unlink(out_raw)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--damage", default=",".join(DAMAGE))
    ap.add_argument("--nbdqcow", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nbdqcow"))
    ap.add_argument("--seed", type=int, default=random.getrandbits(48))
    ap.add_argument("--keep", help="keep the work folders under this folder")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    failures = 0
    rows = []
    for layout in args.layouts.split(","):
        base = tempfile.mkdtemp(prefix=f"recover-score-{layout}-", dir=args.keep)
        img, expected = build(layout, base, args.seed)
        for kind in args.damage.split(","):
            cwd = os.path.join(base, kind)
            os.makedirs(cwd)
            shutil.copy(img, os.path.join(cwd, "img.qcow2"))
            if not damage(os.path.join(cwd, "img.qcow2"), kind, rnd):
                continue
            before = open(os.path.join(cwd, "img.qcow2"), "rb").read()
            p = run(shlex.split(args.nbdqcow) + ["recover", "img.qcow2", "--output", "out.qcow2", "--json", "--quiet"], cwd, check=False)
            if p.returncode == 2:
                rows.append((layout, kind, None, p.returncode, p.stderr.strip()[:100]))
                continue
            if open(os.path.join(cwd, "img.qcow2"), "rb").read() != before:
                print(f"{layout} {kind}: THE SOURCE WAS WRITTEN", file=sys.stderr)
                failures += 1
            chk = run(["qemu-img", "check", "-q", "out.qcow2"], cwd, check=False)
            if chk.returncode != 0:
                print(f"{layout} {kind}: qemu-img check of the output fails: {chk.stdout}{chk.stderr}", file=sys.stderr)
                failures += 1
            c = score(cwd, expected, args.seed)
            failures += c["WRONG"]
            rows.append((layout, kind, c, p.returncode, ""))
            n = len(expected)
            print(f"{layout:22} {kind:22} exit {p.returncode}  in place {100 * c['in-place'] / n:6.2f}%  saved {100 * c['saved'] / n:6.2f}%  "
                  f"lost {100 * c['lost'] / n:6.2f}%  WRONG {c['WRONG']}", flush=True)
        if not args.keep:
            shutil.rmtree(base)
    print(f"\nseed {args.seed}; blocks per image: {sum(n for _, n in RUNS) // BLOCK}")
    print("| layout | damage | exit | in place | saved | lost | WRONG |")
    print("|---|---|---|---|---|---|---|")
    total = sum(n for _, n in RUNS) // BLOCK
    for layout, kind, c, code, err in rows:
        if c is None:
            print(f"| {layout} | {kind} | {code} | - | - | - | - (refused: {err}) |")
        else:
            n = sum(c.values())
            print(f"| {layout} | {kind} | {code} | {100 * c['in-place'] / n:.1f}% | {100 * c['saved'] / n:.1f}% | {100 * c['lost'] / n:.1f}% | {c['WRONG']} |")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
