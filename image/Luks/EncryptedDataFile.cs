using System.Buffers;
using System.Runtime.CompilerServices;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Luks;

/// <summary>
/// The view of a data file whose sectors are encrypted with their host sector number as IV (qcow2 LUKS uses the
/// host offset, not the guest one). Reads decrypt in the caller's buffer; writes encrypt a copy, never the caller's
/// buffer (a client's payload may be reused). A range not on sector boundaries reads or read-modify-writes its
/// partial end sectors. The fast zeroing calls refuse: zeroes on disk would decrypt to noise, so callers write
/// encrypted zeroes instead.
/// </summary>
public sealed class EncryptedDataFile(IHostFile inner, SectorCipher cipher, bool ownsInner) : HostFileDecorator(inner)
{
    private const int Sector = SectorCipher.SectorSize;
    private const int WriteChunk = 1 << 20;
    /// <summary>Serialises read-modify-writes of partial sectors, so two small writes into one sector cannot lose each other.</summary>
    private readonly Lock _partialSectors = new();

    public override void Read(long offset, Span<byte> buffer)
    {
        if (buffer.IsEmpty) return;
        int head = (int)(offset & (Sector - 1));
        if (head != 0 || buffer.Length < Sector)
        {
            int n = Math.Min(buffer.Length, Sector - head);
            Span<byte> sector = stackalloc byte[Sector];
            ReadSector(offset - head, sector);
            sector.Slice(head, n).CopyTo(buffer);
            offset += n;
            buffer = buffer[n..];
        }
        int whole = buffer.Length & ~(Sector - 1);
        if (whole > 0)
        {
            Inner.Read(offset, buffer[..whole]);
            cipher.Decrypt(offset / Sector, buffer[..whole]);
            offset += whole;
            buffer = buffer[whole..];
        }
        if (!buffer.IsEmpty)
        {
            Span<byte> sector = stackalloc byte[Sector];
            ReadSector(offset, sector);
            sector[..buffer.Length].CopyTo(buffer);
        }
    }

    // The data path arrives here asynchronously: it must decrypt and encrypt too, never pass through to the
    // inner file (the decorator's default forwarding would read and write ciphertext as plaintext). The whole
    // sectors go through the inner file's asynchronous calls (the io_uring engine); partial end sectors, at most
    // one at each end, use the synchronous read-modify-write under its lock.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        if (buffer.IsEmpty) return;
        int head = (int)(offset & (Sector - 1));
        if (head != 0 || buffer.Length < Sector)
        {
            int n = Math.Min(buffer.Length, Sector - head);
            Read(offset, buffer.Span[..n]);
            offset += n;
            buffer = buffer[n..];
        }
        int whole = buffer.Length & ~(Sector - 1);
        if (whole > 0)
        {
            await Inner.ReadAsync(offset, buffer[..whole]).ConfigureAwait(false);
            cipher.Decrypt(offset / Sector, buffer.Span[..whole]);
            offset += whole;
            buffer = buffer[whole..];
        }
        if (!buffer.IsEmpty)
            Read(offset, buffer.Span);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        if (data.IsEmpty) return;
        int head = (int)(offset & (Sector - 1));
        if (head != 0 || data.Length < Sector)
        {
            int n = Math.Min(data.Length, Sector - head);
            PatchSector(offset - head, head, data.Span[..n]);
            offset += n;
            data = data[n..];
        }
        int whole = data.Length & ~(Sector - 1);
        if (whole > 0)
        {
            byte[] copy = ArrayPool<byte>.Shared.Rent(Math.Min(whole, WriteChunk));
            try
            {
                for (int done = 0; done < whole;)
                {
                    int n = Math.Min(whole - done, WriteChunk);
                    data.Span.Slice(done, n).CopyTo(copy);
                    cipher.Encrypt((offset + done) / Sector, copy.AsSpan(0, n));
                    await Inner.WriteAsync(offset + done, copy.AsMemory(0, n)).ConfigureAwait(false);
                    done += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(copy);
            }
            offset += whole;
            data = data[whole..];
        }
        if (!data.IsEmpty)
            PatchSector(offset, 0, data.Span);
    }

    public override void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) return;
        int head = (int)(offset & (Sector - 1));
        if (head != 0 || data.Length < Sector)
        {
            int n = Math.Min(data.Length, Sector - head);
            PatchSector(offset - head, head, data[..n]);
            offset += n;
            data = data[n..];
        }
        int whole = data.Length & ~(Sector - 1);
        if (whole > 0)
        {
            byte[] copy = ArrayPool<byte>.Shared.Rent(Math.Min(whole, WriteChunk));
            try
            {
                for (int done = 0; done < whole;)
                {
                    int n = Math.Min(whole - done, WriteChunk);
                    var chunk = copy.AsSpan(0, n);
                    data.Slice(done, n).CopyTo(chunk);
                    cipher.Encrypt((offset + done) / Sector, chunk);
                    Inner.Write(offset + done, chunk);
                    done += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(copy);
            }
            offset += whole;
            data = data[whole..];
        }
        if (!data.IsEmpty)
            PatchSector(offset, 0, data);
    }

    private void ReadSector(long sectorOffset, Span<byte> sector)
    {
        Inner.Read(sectorOffset, sector);
        cipher.Decrypt(sectorOffset / Sector, sector);
    }

    private void PatchSector(long sectorOffset, int at, ReadOnlySpan<byte> data)
    {
        Span<byte> sector = stackalloc byte[Sector];
        lock (_partialSectors)
        {
            ReadSector(sectorOffset, sector);
            data.CopyTo(sector[at..]);
            cipher.Encrypt(sectorOffset / Sector, sector);
            Inner.Write(sectorOffset, sector);
        }
    }

    public override bool TryZeroRange(long offset, long length) => false;

    public override bool TryAllocateZeroed(long offset, long length) => false;

    /// <summary>Closes the cipher, and the file beneath when it is a separate data file (not the image file itself).</summary>
    public override void Dispose()
    {
        cipher.Dispose();
        if (ownsInner) Inner.Dispose();
    }
}
