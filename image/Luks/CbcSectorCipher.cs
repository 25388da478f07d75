using System.Buffers.Binary;
using System.Security.Cryptography;

namespace NbdQcow.Image.Luks;

/// <summary>
/// AES-CBC per 512-byte sector with a plain, plain64 or ESSIV IV, built on AES-ECB (the BCL's CBC one-shots set
/// the key up on every call). Decryption runs one ECB call per chunk; encryption is sequential by nature.
/// </summary>
public sealed class CbcSectorCipher : SectorCipher
{
    private const int ChunkBytes = 64 * 1024;
    private const int Block = AesBlockTransform.BlockSize;
    private readonly byte[] _key;
    private readonly byte[]? _essivKey;
    private readonly SectorIvMode _ivMode;
    private readonly CipherWorkerPool<Worker> _workers;

    /// <param name="key">The AES key (16, 24 or 32 bytes).</param>
    /// <param name="essivHash">For <see cref="SectorIvMode.Essiv"/>: the hash whose digest of the key is the IV key.</param>
    public CbcSectorCipher(ReadOnlySpan<byte> key, SectorIvMode ivMode, HashAlgorithmName? essivHash = null)
    {
        if (key.Length is not (16 or 24 or 32))
            throw new ArgumentException($"an AES key is 16, 24 or 32 bytes, not {key.Length}");
        _key = key.ToArray();
        _ivMode = ivMode;
        if (ivMode == SectorIvMode.Essiv)
        {
            var hash = essivHash ?? throw new ArgumentException("ESSIV needs a hash");
            _essivKey = LuksHash.Digest(hash, key);
            if (_essivKey.Length is not (16 or 24 or 32))
                throw new ArgumentException($"ESSIV with {hash.Name} gives a {_essivKey.Length}-byte key, which is no AES key size");
        }
        _workers = new CipherWorkerPool<Worker>(() => new Worker(_key, _essivKey));
    }

    public override void Encrypt(long firstSector, Span<byte> data)
    {
        EnsureWholeSectors(data.Length);
        var worker = Rent();
        try
        {
            var block = worker.Scratch;
            for (int s = 0; s * SectorSize < data.Length; s++)
            {
                var sector = data.Slice(s * SectorSize, SectorSize);
                MakeIv(worker, firstSector + s, block.AsSpan(0, Block));
                for (int b = 0; b < SectorSize; b += Block)
                {
                    XtsSectorCipher.Xor(block.AsSpan(0, Block), sector.Slice(b, Block), block.AsSpan(0, Block));
                    worker.Data.Encrypt(block, 0, Block);
                    block.AsSpan(0, Block).CopyTo(sector.Slice(b, Block));
                }
            }
        }
        finally
        {
            Return(worker);
        }
    }

    public override void Decrypt(long firstSector, Span<byte> data)
    {
        EnsureWholeSectors(data.Length);
        var worker = Rent();
        try
        {
            long sectorNumber = firstSector;
            Span<byte> iv = stackalloc byte[Block];
            while (data.Length > 0)
            {
                int n = Math.Min(data.Length, ChunkBytes);
                var scratch = worker.Scratch;
                data[..n].CopyTo(scratch);
                worker.Data.Decrypt(scratch, 0, n);
                for (int s = 0; s * SectorSize < n; s++)
                {
                    var sector = data.Slice(s * SectorSize, SectorSize);
                    var plain = scratch.AsSpan(s * SectorSize, SectorSize);
                    // Last block first, so the ciphertext block each one needs is still in place.
                    for (int b = SectorSize - Block; b > 0; b -= Block)
                        XtsSectorCipher.Xor(plain.Slice(b, Block), sector.Slice(b - Block, Block), sector.Slice(b, Block));
                    MakeIv(worker, sectorNumber + s, iv);
                    XtsSectorCipher.Xor(plain[..Block], iv, sector[..Block]);
                }
                data = data[n..];
                sectorNumber += n / SectorSize;
            }
        }
        finally
        {
            Return(worker);
        }
    }

    private void MakeIv(Worker worker, long sector, Span<byte> iv)
    {
        iv.Clear();
        switch (_ivMode)
        {
            case SectorIvMode.Plain:
                BinaryPrimitives.WriteUInt32LittleEndian(iv, (uint)sector);
                break;
            case SectorIvMode.Plain64:
                BinaryPrimitives.WriteUInt64LittleEndian(iv, (ulong)sector);
                break;
            default:
                var essiv = worker.EssivBlock;
                Array.Clear(essiv);
                BinaryPrimitives.WriteUInt64LittleEndian(essiv, (ulong)sector);
                worker.Essiv!.Encrypt(essiv, 0, Block);
                essiv.CopyTo(iv);
                break;
        }
    }

    private Worker Rent() => _workers.Rent();

    private void Return(Worker worker) => _workers.Return(worker);

    public override void Dispose() => _workers.Dispose();

    private sealed class Worker(byte[] key, byte[]? essivKey) : IDisposable
    {
        public AesBlockTransform Data { get; } = new(key);
        public AesBlockTransform? Essiv { get; } = essivKey is null ? null : new AesBlockTransform(essivKey);
        public byte[] Scratch { get; } = new byte[ChunkBytes];
        public byte[] EssivBlock { get; } = new byte[Block];

        public void Dispose()
        {
            Data.Dispose();
            Essiv?.Dispose();
        }
    }
}
