namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// Bash scripts that build one qcow2 image per variant qemu-img 7.2 can make, in the current folder, as img.qcow2,
/// filled with known patterns through qemu-io (writes at odd offsets, zero writes, discards).
/// </summary>
internal static class Qcow2ImageVariants
{
    /// <summary>Writes a pattern mix to image $1 (format $2) of size $3 bytes.</summary>
    private const string Patterns = """
        pw() {
          local img=$1 fmt=$2 size=$3
          qemu-io -f "$fmt" "$img" \
            -c "write -P 0x11 0 64k" \
            -c "write -P 0x22 1M 300k" \
            -c "write -P 0x33 1234567 7777" \
            -c "write -z 2M 128k" \
            -c "write -z 1100k 100k" \
            -c "write -P 0x55 $((size / 2 - 1000)) 3000" \
            -c "discard $((size / 2 + 65536 * 4)) 64k" \
            -c "write -P 0x44 $((size - 4096)) 4096" >/dev/null
        }
        pw2() {
          local img=$1 fmt=$2
          qemu-io -f "$fmt" "$img" -c "write -P 0x66 4k 8k" -c "write -P 0x77 1050k 20k" -c "write -z 1M 8k" -c "discard 3M 1M" >/dev/null
        }
        """;

    public static readonly IReadOnlyDictionary<string, string> Scripts = new Dictionary<string, string>
    {
        ["v2-64k"] = "qemu-img create -q -f qcow2 -o compat=0.10 img.qcow2 16M; pw img.qcow2 qcow2 16777216",
        ["v3-512b-clusters"] = "qemu-img create -q -f qcow2 -o cluster_size=512 img.qcow2 6M; pw img.qcow2 qcow2 6291456",
        ["v3-4k-clusters"] = "qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["v3-64k-clusters"] = "qemu-img create -q -f qcow2 img.qcow2 16M; pw img.qcow2 qcow2 16777216",
        ["v3-2m-clusters"] = "qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 64M; pw img.qcow2 qcow2 67108864",
        ["refcount-1"] = "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=1 img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["refcount-2"] = "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=2 img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["refcount-4"] = "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=4 img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["refcount-8"] = "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=8 img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["refcount-32"] = "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=32 img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["refcount-64"] = "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=64 img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["odd-virtual-size"] = "qemu-img create -q -f qcow2 img.qcow2 16778752; pw img.qcow2 qcow2 16778752",
        ["odd-virtual-size-2m-clusters"] = "qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 5243392; pw img.qcow2 qcow2 5243392",
        ["compressed-zlib"] = """
            qemu-img create -q -f raw src.raw 8M; pw src.raw raw 8388608
            head -c 1500000 /dev/urandom > rnd; dd if=rnd of=src.raw bs=64K seek=4000000 oflag=seek_bytes conv=notrunc status=none
            qemu-img convert -c -O qcow2 src.raw img.qcow2
            """,
        ["compressed-zstd"] = """
            qemu-img create -q -f raw src.raw 8M; pw src.raw raw 8388608
            head -c 1500000 /dev/urandom > rnd; dd if=rnd of=src.raw bs=64K seek=4000000 oflag=seek_bytes conv=notrunc status=none
            qemu-img convert -c -O qcow2 -o compression_type=zstd src.raw img.qcow2
            """,
        ["compressed-4k-clusters-then-overwritten"] = """
            qemu-img create -q -f raw src.raw 4M; pw src.raw raw 4194304
            qemu-img convert -c -O qcow2 -o cluster_size=4k src.raw img.qcow2; pw2 img.qcow2 qcow2
            """,
        ["compressed-2m-clusters-zstd"] = """
            qemu-img create -q -f raw src.raw 8M; pw src.raw raw 8388608
            qemu-img convert -c -O qcow2 -o cluster_size=2M,compression_type=zstd src.raw img.qcow2
            """,
        ["backing-qcow2"] = """
            qemu-img create -q -f qcow2 base.qcow2 16M; pw base.qcow2 qcow2 16777216
            qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 img.qcow2; pw2 img.qcow2 qcow2
            """,
        ["backing-chain-of-three-relative"] = """
            mkdir -p sub; qemu-img create -q -f qcow2 -o cluster_size=4k sub/base.qcow2 8M; pw sub/base.qcow2 qcow2 8388608
            (cd sub && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2) ; qemu-io -f qcow2 sub/mid.qcow2 -c "write -P 0x99 2M 1M" >/dev/null
            qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 img.qcow2; pw2 img.qcow2 qcow2
            """,
        ["backing-raw-smaller"] = """
            qemu-img create -q -f raw base.raw 5M; pw base.raw raw 5242880
            qemu-img create -q -f qcow2 -b base.raw -F raw img.qcow2 16M; pw2 img.qcow2 qcow2
            """,
        ["backing-qcow2-larger"] = """
            qemu-img create -q -f qcow2 base.qcow2 32M; pw base.qcow2 qcow2 33554432
            qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 img.qcow2 12M; pw2 img.qcow2 qcow2
            """,
        ["extended-l2"] = """
            qemu-img create -q -f qcow2 -o extended_l2=on img.qcow2 16M; pw img.qcow2 qcow2 16777216
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x88 6M 2k" -c "write -z 6200k 4k" -c "write -P 0x89 7M 12k" >/dev/null
            """,
        ["extended-l2-backing"] = """
            qemu-img create -q -f qcow2 base.qcow2 16M; pw base.qcow2 qcow2 16777216
            qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k -b base.qcow2 -F qcow2 img.qcow2; pw2 img.qcow2 qcow2
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x8a 1M 4k" -c "write -P 0x8b 1052k 4k" -c "write -z 8200k 4k" >/dev/null
            """,
        ["external-data-file"] = "qemu-img create -q -f qcow2 -o data_file=data.raw img.qcow2 16M; pw img.qcow2 qcow2 16777216",
        ["external-data-file-raw"] = "qemu-img create -q -f qcow2 -o data_file=$PWD/data.raw,data_file_raw=on img.qcow2 16M; pw img.qcow2 qcow2 16777216",
        ["preallocated-metadata"] = "qemu-img create -q -f qcow2 -o preallocation=metadata img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["preallocated-full-4k"] = "qemu-img create -q -f qcow2 -o preallocation=falloc,cluster_size=4k img.qcow2 4M; pw img.qcow2 qcow2 4194304",
        ["lazy-refcounts"] = "qemu-img create -q -f qcow2 -o lazy_refcounts=on img.qcow2 8M; pw img.qcow2 qcow2 8388608",
        ["bitmaps"] = """
            qemu-img create -q -f qcow2 img.qcow2 16M; pw img.qcow2 qcow2 16777216
            qemu-img bitmap --add img.qcow2 b0; qemu-img bitmap --add -g 128k img.qcow2 b1
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x12 3M 64k" >/dev/null
            """,
        ["snapshots-active"] = """
            qemu-img create -q -f qcow2 img.qcow2 16M; pw img.qcow2 qcow2 16777216
            qemu-img snapshot -c s1 img.qcow2; pw2 img.qcow2 qcow2; qemu-img snapshot -c s2 img.qcow2
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x13 0 1M" >/dev/null
            """,
    };

    public static string Build(string folder, string variant) => QemuTools.Bash(folder, Patterns + "\n" + Scripts[variant]);
}
