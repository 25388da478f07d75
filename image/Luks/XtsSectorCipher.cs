using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace NbdQcow.Image.Luks;

/// <summary>
/// AES-XTS (IEEE 1619) built on AES-ECB, since the BCL has no XTS: the tweak of each sector is its IV (plain64:
/// the sector number) encrypted with the second key, then multiplied by x in GF(2^128) from one 16-byte block to
/// the next. Sectors are processed a chunk at a time: all tweaks of the chunk are computed first, then the chunk is
/// XORed, encrypted with one ECB call and XORed again. No allocation per call once the workers exist.
/// </summary>
public sealed class XtsSectorCipher : SectorCipher
{
    private const int ChunkBytes = 64 * 1024;
    private readonly byte[] _dataKey;
    private readonly byte[] _tweakKey;
    private readonly SectorIvMode _ivMode;
    private readonly CipherWorkerPool<Worker> _workers;

    /// <param name="key">Both XTS keys, data key first (32, 48 or 64 bytes).</param>
    public XtsSectorCipher(ReadOnlySpan<byte> key, SectorIvMode ivMode = SectorIvMode.Plain64)
    {
        if (key.Length is not (32 or 48 or 64))
            throw new ArgumentException($"an AES-XTS key is 32, 48 or 64 bytes, not {key.Length}");
        if (ivMode == SectorIvMode.Essiv)
            throw new ArgumentException("XTS with an ESSIV IV is not supported");
        _dataKey = key[..(key.Length / 2)].ToArray();
        _tweakKey = key[(key.Length / 2)..].ToArray();
        _ivMode = ivMode;
        _workers = new CipherWorkerPool<Worker>(() => new Worker(_dataKey, _tweakKey));
    }

    public override void Encrypt(long firstSector, Span<byte> data) => Transform(firstSector, data, encrypt: true);

    public override void Decrypt(long firstSector, Span<byte> data) => Transform(firstSector, data, encrypt: false);

    private void Transform(long firstSector, Span<byte> data, bool encrypt)
    {
        EnsureWholeSectors(data.Length);
        var worker = Rent();
        try
        {
            long sector = firstSector;
            while (data.Length > 0)
            {
                int n = Math.Min(data.Length, ChunkBytes);
                int sectors = n / SectorSize;
                var ivs = worker.Ivs;
                Array.Clear(ivs, 0, sectors * 16);
                for (int s = 0; s < sectors; s++)
                {
                    ulong iv = _ivMode == SectorIvMode.Plain ? (uint)(sector + s) : (ulong)(sector + s);
                    BinaryPrimitives.WriteUInt64LittleEndian(ivs.AsSpan(s * 16), iv);
                }
                worker.Tweak.Encrypt(ivs, 0, sectors * 16);
                for (int s = 0; s < sectors; s++)
                    Expand(ivs.AsSpan(s * 16, 16), worker.Tweaks.AsSpan(s * SectorSize, SectorSize));
                Apply(worker, data[..n], encrypt);
                data = data[n..];
                sector += sectors;
            }
        }
        finally
        {
            Return(worker);
        }
    }

    /// <summary>Fills <paramref name="tweaks"/> with T, T·x, T·x², ... starting from the encrypted IV.</summary>
    private static void Expand(ReadOnlySpan<byte> first, Span<byte> tweaks)
    {
        ulong lo = BinaryPrimitives.ReadUInt64LittleEndian(first);
        ulong hi = BinaryPrimitives.ReadUInt64LittleEndian(first[8..]);
        var words = MemoryMarshal.Cast<byte, ulong>(tweaks);
        for (int i = 0; i < words.Length; i += 2)
        {
            words[i] = BitConverter.IsLittleEndian ? lo : BinaryPrimitives.ReverseEndianness(lo);
            words[i + 1] = BitConverter.IsLittleEndian ? hi : BinaryPrimitives.ReverseEndianness(hi);
            ulong carry = hi >> 63;
            hi = (hi << 1) | (lo >> 63);
            lo = (lo << 1) ^ (carry * 0x87);
        }
    }

    /// <summary>C = E(P ⊕ T) ⊕ T over the whole span (or D for decryption), with the tweaks already in the worker.</summary>
    private static void Apply(Worker worker, Span<byte> data, bool encrypt)
    {
        var scratch = worker.Scratch.AsSpan(0, data.Length);
        var tweaks = worker.Tweaks.AsSpan(0, data.Length);
        Xor(data, tweaks, scratch);
        if (encrypt) worker.Data.Encrypt(worker.Scratch, 0, data.Length);
        else worker.Data.Decrypt(worker.Scratch, 0, data.Length);
        Xor(scratch, tweaks, data);
    }

    internal static void Xor(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int width = Vector<byte>.Count;
            for (; i + width <= a.Length; i += width)
                (new Vector<byte>(a[i..]) ^ new Vector<byte>(b[i..])).CopyTo(destination[i..]);
        }
        for (; i < a.Length; i++)
            destination[i] = (byte)(a[i] ^ b[i]);
    }

    private Worker Rent() => _workers.Rent();

    private void Return(Worker worker) => _workers.Return(worker);

    public override void Dispose() => _workers.Dispose();

    private sealed class Worker(byte[] dataKey, byte[] tweakKey) : IDisposable
    {
        public AesBlockTransform Data { get; } = new(dataKey);
        public AesBlockTransform Tweak { get; } = new(tweakKey);
        public byte[] Ivs { get; } = new byte[ChunkBytes / SectorSize * 16];
        public byte[] Tweaks { get; } = new byte[ChunkBytes];
        public byte[] Scratch { get; } = new byte[ChunkBytes];

        public void Dispose()
        {
            Data.Dispose();
            Tweak.Dispose();
        }
    }
}
