using System.Buffers.Binary;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Storage;

/// <summary>
/// A real server writing a qcow2 image on a size-limited tmpfs that fills up: allocating writes get ENOSPC (not
/// EIO), overwrites keep working, nothing half-written (qemu-img check stays clean), and with the enospc policy
/// held writes finish once space is freed, without a restart.
/// </summary>
[Collection("FullStorage")]
public sealed class FullStorageTests
{
    private const ushort CommandWrite = 1;
    private const ushort CommandFlush = 3;
    private const uint NbdEnospc = 28;
    private const int Chunk = 1 << 20;

    [Fact]
    public async Task Allocating_writes_get_enospc_overwrites_keep_working_and_writes_succeed_again_once_space_is_freed()
    {
        using var tmpfs = await SmallTmpfs.MountAsync(24);
        var image = tmpfs.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        tmpfs.FillLeaving(4);
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image, ExtraArguments = ["--verbose"] });
        using var connection = await RawNbdConnection.ConnectAsync(server.Port!.Value);
        await connection.HandshakeWithExportNameAsync();

        // Fill: 1 MiB allocating writes until the file system is full.
        var written = new List<int>();
        uint error = 0;
        var failedChunk = -1;
        for (var i = 0; i < 16; i++)
        {
            error = await WriteAsync(connection, (ulong)i * Chunk, Pattern(i), (ulong)i);
            if (error != 0)
            {
                failedChunk = i;
                break;
            }
            written.Add(i);
        }
        Assert.True(failedChunk > 0, $"no write failed or the first one did (error {error}); free {tmpfs.FreeBytes}\n{server.Describe()}");
        Assert.True(error == NbdEnospc, $"a write on a full file system failed with errno {error}, not ENOSPC (28)\n{server.Describe()}");

        // An overwrite of an allocated cluster needs no new space, nor does a flush of what is mapped.
        Assert.Equal(0u, await WriteAsync(connection, 0, Pattern(100), 100));
        Assert.Equal(0u, await RequestAsync(connection, RawNbdConnection.Request(CommandFlush, 101, 0, 0)));

        // Space comes back: the same write now succeeds, on the same connection, no restart.
        tmpfs.FreeBallast();
        Assert.Equal(0u, await WriteAsync(connection, (ulong)failedChunk * Chunk, Pattern(failedChunk), 102));
        Assert.Equal(0u, await RequestAsync(connection, RawNbdConnection.Request(CommandFlush, 103, 0, 0)));
        written.Add(failedChunk);

        foreach (var i in written)
        {
            var (readError, data) = await connection.ReadAsync((ulong)i * Chunk, Chunk, 200 + (ulong)i);
            Assert.Equal(0u, readError);
            Assert.True(data.AsSpan().SequenceEqual(i == 0 ? Pattern(100) : Pattern(i)), $"chunk {i} reads back different data");
        }
        await connection.DisconnectAsync();
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image, server.Describe());
    }

    [Fact]
    public async Task Fio_with_werror_enospc_finishes_without_errors_once_space_is_freed_and_its_data_verifies()
    {
        using var tmpfs = await SmallTmpfs.MountAsync(32);
        using var sockets = new TempDirectory("ctl");
        var image = tmpfs.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        tmpfs.FillLeaving(6);
        var control = sockets.File("control.sock");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            ExtraArguments = ["--werror", "enospc", "--error-retry-timeout", "60000", "--control", control],
        });

        var fio = RunFioAsync(server.Uri());
        // Once the server holds writes for lack of space, the operator sees it; 2 s later space is freed.
        await WaitForOutputAsync(server, "writes paused: ENOSPC", TimeSpan.FromSeconds(60));
        var status = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["control", control, "status"], TimeSpan.FromSeconds(60));
        status.EnsureSuccess(server.Describe());
        Assert.Contains("writes paused: ENOSPC", status.Stdout);
        Assert.False(fio.IsCompleted, "fio finished while its writes should be held");
        await Task.Delay(TimeSpan.FromSeconds(2));
        tmpfs.FreeBallast();

        var result = await fio;
        result.EnsureSuccess(server.Describe());
        Assert.Contains("err= 0", result.Stdout);
        Assert.DoesNotContain("verify failed", result.Stdout + result.Stderr);
        Assert.Contains("writes resumed after", server.Output);
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image, server.Describe());
    }

    [Fact]
    public async Task Fio_with_werror_report_sees_enospc_and_the_image_stays_clean()
    {
        using var tmpfs = await SmallTmpfs.MountAsync(32);
        var image = tmpfs.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        tmpfs.FillLeaving(6);
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image });

        var result = await RunFioAsync(server.Uri());
        result.EnsureFailure(server.Describe());
        Assert.Contains("No space left on device", result.Stdout + result.Stderr);
        Assert.DoesNotContain("paused", server.Output);
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image, server.Describe());
    }

    [Fact]
    public async Task Werror_stop_holds_writes_while_the_disk_is_full_and_takes_them_again_after_space_is_freed()
    {
        using var tmpfs = await SmallTmpfs.MountAsync(24);
        using var sockets = new TempDirectory("ctl");
        var image = tmpfs.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        tmpfs.FillLeaving(2);
        var control = sockets.File("control.sock");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            ExtraArguments = ["--werror", "stop", "--error-retry-timeout", "60000", "--control", control],
        });
        using var connection = await RawNbdConnection.ConnectAsync(server.Port!.Value);
        await connection.HandshakeWithExportNameAsync();

        // Pipelined 1 MiB writes, more than the free space: the server stops taking them and answers none.
        const int count = 6;
        for (var i = 0; i < count; i++)
        {
            await connection.SendAsync(RawNbdConnection.Request(CommandWrite, (ulong)i, (ulong)i * Chunk, Chunk));
            await connection.SendAsync(Pattern(i));
        }
        await WaitForOutputAsync(server, "writes stopped (policy stop)", TimeSpan.FromSeconds(60));
        var status = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["control", control, "status"], TimeSpan.FromSeconds(60));
        status.EnsureSuccess(server.Describe());
        Assert.Contains("writes paused: ENOSPC", status.Stdout);

        tmpfs.FreeBallast();
        var answered = new HashSet<ulong>();
        for (var i = 0; i < count; i++)
        {
            var reply = await connection.TryReadSimpleReplyOrCloseAsync(TimeSpan.FromSeconds(30));
            Assert.True(reply is not null, "the server closed the connection");
            Assert.True(reply.Value.Error == 0, $"write {reply.Value.Cookie} failed with {reply.Value.Error}\n{server.Describe()}");
            answered.Add(reply.Value.Cookie);
        }
        Assert.Equal(count, answered.Count);
        Assert.Equal(0u, await RequestAsync(connection, RawNbdConnection.Request(CommandFlush, 100, 0, 0)));
        for (var i = 0; i < count; i++)
        {
            var (readError, data) = await connection.ReadAsync((ulong)i * Chunk, Chunk, 200 + (ulong)i);
            Assert.Equal(0u, readError);
            Assert.True(data.AsSpan().SequenceEqual(Pattern(i)), $"chunk {i} reads back different data");
        }
        Assert.Contains("writes taken again", server.Output);
        await connection.DisconnectAsync();
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image, server.Describe());
    }

    [Fact]
    public async Task Werror_retry_gives_up_after_the_retry_timeout_and_the_client_gets_enospc()
    {
        using var tmpfs = await SmallTmpfs.MountAsync(16);
        var image = tmpfs.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        tmpfs.FillLeaving(1);
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            ExtraArguments = ["--werror", "retry", "--error-retry-timeout", "1500"],
        });
        using var connection = await RawNbdConnection.ConnectAsync(server.Port!.Value);
        await connection.HandshakeWithExportNameAsync();

        uint error = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 8 && error == 0; i++)
        {
            clock.Restart();
            error = await WriteAsync(connection, (ulong)i * Chunk, Pattern(i), (ulong)i);
        }
        Assert.True(error == NbdEnospc, $"expected ENOSPC once the disk is full, got {error}\n{server.Describe()}");
        Assert.True(clock.ElapsedMilliseconds >= 1400, $"the failing write was answered after {clock.ElapsedMilliseconds} ms, before the retry timeout");
        Assert.Contains("gave up on held writes after", server.Output);
        await connection.DisconnectAsync();
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image, server.Describe());
    }

    /// <summary>16 MiB of sequential 256 KiB writes (more than the free space), then a read verifying every block.</summary>
    private static Task<ToolResult> RunFioAsync(string uri) => ToolRunner.RunAsync("fio", [
        "--name=fill", "--ioengine=nbd", $"--uri={uri}", "--rw=write", "--bs=256k", "--size=16M", "--iodepth=4",
        "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
    ], TimeSpan.FromSeconds(120));

    private static async Task WaitForOutputAsync(ServerProcess server, string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!server.Output.Contains(text, StringComparison.Ordinal))
        {
            server.AssertStillRunning();
            if (DateTime.UtcNow > deadline) Assert.Fail($"the server never logged '{text}'\n{server.Describe()}");
            await Task.Delay(50);
        }
    }

    private static async Task<uint> WriteAsync(RawNbdConnection connection, ulong offset, byte[] data, ulong cookie)
    {
        await connection.SendAsync(RawNbdConnection.Request(CommandWrite, cookie, offset, (uint)data.Length));
        await connection.SendAsync(data);
        return await ReplyAsync(connection, cookie);
    }

    private static async Task<uint> RequestAsync(RawNbdConnection connection, byte[] request)
    {
        await connection.SendAsync(request);
        return await ReplyAsync(connection, BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(8)));
    }

    private static async Task<uint> ReplyAsync(RawNbdConnection connection, ulong cookie)
    {
        var reply = await connection.TryReadSimpleReplyOrCloseAsync(TimeSpan.FromSeconds(30));
        Assert.True(reply is not null, "the server closed the connection");
        Assert.Equal(cookie, reply.Value.Cookie);
        return reply.Value.Error;
    }

    private static byte[] Pattern(int seed)
    {
        var data = new byte[Chunk];
        for (var i = 0; i < data.Length; i += 8) BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(i), ((long)seed << 40) | (long)i);
        return data;
    }
}
