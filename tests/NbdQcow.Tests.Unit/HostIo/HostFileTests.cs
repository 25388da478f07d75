using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.HostIo;

public sealed class HostFileTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string NewFile(long size)
    {
        var path = _temp.File(Guid.NewGuid().ToString("N") + ".img");
        using (var stream = File.Create(path)) stream.SetLength(size);
        return path;
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Random_unaligned_writes_read_back_like_an_in_memory_model(bool direct)
    {
        const int size = 3 << 20;
        var path = NewFile(size);
        var model = new byte[size];
        var random = new Random(42);
        using (var file = HostFile.Open(path, new HostFileOptions(ReadOnly: false, Direct: direct)))
        {
            Assert.Equal(direct, file.IsDirect);
            for (var i = 0; i < 60; i++)
            {
                // Mostly small odd requests, some crossing the 1 MiB bounce-buffer size.
                var length = i % 10 == 0 ? random.Next(1 << 20, (1 << 20) + 9000) : random.Next(1, 20000);
                var offset = random.Next(0, size - length);
                var data = Pattern(length, i);
                file.Write(offset, data);
                data.CopyTo(model, offset);
                var readOffset = random.Next(0, size - 70000);
                var read = new byte[random.Next(1, 70000)];
                file.Read(readOffset, read);
                Assert.True(model.AsSpan(readOffset, read.Length).SequenceEqual(read), $"read {readOffset}+{read.Length} after write {i}");
            }
            Assert.Equal(size, file.Length);
            file.Flush();
        }
        Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(model));
    }

    [Fact]
    public void Direct_concurrent_unaligned_writes_to_one_block_never_clobber_each_other()
    {
        var path = NewFile(64 << 10);
        using var file = HostFile.Open(path, new HostFileOptions(false, Direct: true));
        // 40 writers each own a 100-byte slice; the slices share 4 KiB blocks, so each write is a read-modify-write.
        Parallel.For(0, 40, new ParallelOptions { MaxDegreeOfParallelism = 8 }, writer =>
        {
            for (var round = 0; round < 20; round++)
                file.Write(1000 + writer * 100, Enumerable.Repeat((byte)(writer + 1), 100).ToArray());
        });
        var all = new byte[8192];
        file.Read(0, all);
        for (var writer = 0; writer < 40; writer++)
            Assert.All(all.AsSpan(1000 + writer * 100, 100).ToArray(), b => Assert.Equal((byte)(writer + 1), b));
        Assert.All(all.AsSpan(0, 1000).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Direct_unaligned_write_past_the_end_extends_the_file_to_exactly_its_end()
    {
        var path = NewFile(5000);
        using var file = HostFile.Open(path, new HostFileOptions(false, Direct: true));
        file.Write(6000, Pattern(123, 1));
        Assert.Equal(6123, file.Length);
        var read = new byte[200];
        file.Read(6000, read);
        Assert.True(read.AsSpan(0, 123).SequenceEqual(Pattern(123, 1)));
        Assert.All(read.AsSpan(123).ToArray(), b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Punched_hole_reads_as_zero_and_seek_data_and_hole_find_its_edges(bool direct)
    {
        const int size = 4 << 20;
        var path = NewFile(size);
        using var file = HostFile.Open(path, new HostFileOptions(false, direct));
        file.Write(0, Pattern(size, 7));
        file.Flush();
        Assert.True(file.TryPunchHole(1 << 20, 1 << 20));
        var read = new byte[1 << 20];
        file.Read(1 << 20, read);
        Assert.All(read, b => Assert.Equal(0, b));
        Assert.Equal(1 << 20, file.SeekHole(0));
        Assert.Equal(2 << 20, file.SeekData(1 << 20));
        Assert.Equal(size, file.Length);
    }

    [Fact]
    public void Zero_range_reads_as_zero_keeps_the_length_and_leaves_neighbours_alone()
    {
        const int size = 1 << 20;
        var path = NewFile(size);
        using var file = HostFile.Open(path, new HostFileOptions(false, Direct: true));
        var data = Pattern(size, 3);
        file.Write(0, data);
        Assert.True(file.TryZeroRange(1000, 10000));
        var read = new byte[size];
        file.Read(0, read);
        Array.Clear(data, 1000, 10000);
        Assert.True(read.AsSpan().SequenceEqual(data));
        Assert.Equal(size, file.Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Allocate_zeroed_zeroes_old_bytes_and_grows_the_file_to_cover_the_range(bool direct)
    {
        const int size = 1 << 20;
        var path = NewFile(size);
        using var file = HostFile.Open(path, new HostFileOptions(false, Direct: direct));
        var data = Pattern(size, 5);
        file.Write(0, data);
        Assert.True(file.TryAllocateZeroed(size - 65536, 3 * 65536));
        Assert.Equal(size + 2 * 65536, file.Length);
        var read = new byte[size + 2 * 65536];
        file.Read(0, read);
        Assert.True(read.AsSpan(0, size - 65536).SequenceEqual(data.AsSpan(0, size - 65536)));
        Assert.Equal(-1, read.AsSpan(size - 65536).IndexOfAnyExcept((byte)0));
        Assert.True(file.TryAllocateZeroed(0, 65536));
        Assert.Equal(size + 2 * 65536, file.Length); // never shrinks
    }

    [Fact]
    public void Sparse_file_is_all_hole_and_seek_data_reports_the_end()
    {
        var path = NewFile(8 << 20);
        using var file = HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false));
        Assert.Equal(8 << 20, file.SeekData(0));
        Assert.Equal(0, file.SeekHole(0));
    }

    [Fact]
    public void Writing_a_read_only_file_fails_with_an_errno_and_the_path()
    {
        var path = NewFile(4096);
        using var file = HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false));
        var error = Assert.Throws<HostIoException>(() => file.Write(0, new byte[10]));
        Assert.Equal(9, error.Errno);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Opening_a_missing_file_names_it()
    {
        var path = _temp.File("missing.img");
        var error = Assert.Throws<FileNotFoundException>(() => HostFile.Open(path, new HostFileOptions(false, false)));
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Errors_from_pwrite_carry_the_errno()
    {
        // /dev/full fails every write with ENOSPC.
        using var file = HostFile.Open("/dev/full", new HostFileOptions(ReadOnly: false, Direct: false));
        var error = Assert.Throws<HostIoException>(() => file.Write(0, new byte[512]));
        Assert.Equal(28, error.Errno);
        Assert.True(error.IsNoSpace);
        Assert.Contains("/dev/full", error.Message);
    }

    [Fact]
    public void Create_option_makes_a_missing_file()
    {
        var path = _temp.File("new.img");
        using var file = HostFile.Open(path, new HostFileOptions(false, false, Create: true));
        file.Write(10, new byte[] { 1, 2, 3 });
        Assert.Equal(13, file.Length);
    }
}
