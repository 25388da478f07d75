using NbdQcow.HostIo;
using NbdQcow.Image.Luks;

namespace NbdQcow.Tests.Unit.Luks;

/// <summary>
/// The encrypted data path's asynchronous calls reach the engine's asynchronous calls (so io_uring serves LUKS
/// images too), read back what the synchronous path wrote and the reverse, and allocate nothing once warm.
/// </summary>
public sealed class EncryptedDataFileAsyncTests
{
    /// <summary>Counts which surface of the file beneath is used.</summary>
    private sealed class SurfaceCountingHostFile(IHostFile inner) : HostFileDecorator(inner)
    {
        public int SyncReads, SyncWrites, AsyncReads, AsyncWrites;

        public override void Read(long offset, Span<byte> buffer) { SyncReads++; base.Read(offset, buffer); }
        public override void Write(long offset, ReadOnlySpan<byte> data) { SyncWrites++; base.Write(offset, data); }
        public override ValueTask ReadAsync(long offset, Memory<byte> buffer) { AsyncReads++; return base.ReadAsync(offset, buffer); }
        public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data) { AsyncWrites++; return base.WriteAsync(offset, data); }
    }

    private static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(seed + i * 7);
        return data;
    }

    [Fact]
    public async Task Whole_sectors_go_through_the_inner_async_calls_and_match_the_sync_path()
    {
        using var dir = new TempDirectory();
        var host = HostFile.Open(dir.File("data"), new HostFileOptions(ReadOnly: false, Direct: false, Create: true));
        host.SetLength(4 << 20);
        var counting = new SurfaceCountingHostFile(host);
        using var file = new EncryptedDataFile(counting, new XtsSectorCipher(Pattern(64, 3)), ownsInner: true);

        var data = Pattern(64 << 10, 9);
        await file.WriteAsync(1 << 20, data);
        Assert.Equal(0, counting.SyncWrites);
        Assert.True(counting.AsyncWrites > 0);

        var back = new byte[data.Length];
        await file.ReadAsync(1 << 20, back);
        Assert.Equal(0, counting.SyncReads);
        Assert.True(counting.AsyncReads > 0);
        Assert.Equal(data, back);

        var plain = new byte[data.Length];
        file.Read(1 << 20, plain); // the synchronous path decrypts what the asynchronous one wrote
        Assert.Equal(data, plain);
        var cipherText = new byte[data.Length];
        host.Read(1 << 20, cipherText);
        Assert.NotEqual(data, cipherText);

        // Unaligned ends: the partial sectors are read-modify-written, the whole ones in between asynchronously.
        var odd = Pattern(5000, 77);
        await file.WriteAsync((2 << 20) + 100, odd);
        var oddBack = new byte[odd.Length];
        file.Read((2 << 20) + 100, oddBack);
        Assert.Equal(odd, oddBack);
        Array.Clear(oddBack);
        await file.ReadAsync((2 << 20) + 100, oddBack);
        Assert.Equal(odd, oddBack);
    }

    [Fact]
    public async Task The_async_path_allocates_nothing_once_warm()
    {
        using var dir = new TempDirectory();
        var host = HostFile.Open(dir.File("data"), new HostFileOptions(ReadOnly: false, Direct: false, Create: true));
        host.SetLength(4 << 20);
        using var file = new EncryptedDataFile(host, new XtsSectorCipher(Pattern(64, 5)), ownsInner: true);
        var data = Pattern(256 << 10, 1);
        var back = new byte[data.Length];
        for (int i = 0; i < 3; i++)
        {
            await file.WriteAsync(0, data);
            await file.ReadAsync(0, back);
        }
        // The threads engine completes at once, so every await below continues on this thread.
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++)
        {
            await file.WriteAsync(i * 4096L, data);
            await file.ReadAsync(i * 4096L, back);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"20 encrypted async calls allocated {allocated} bytes");
    }
}
