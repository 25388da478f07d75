using System.Net.Sockets;
using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Protocol.Client;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>The server's session driven by the protocol library's client over real loopback TCP.</summary>
public class NbdSessionTests
{
    private const long Size = 64L * 1024 * 1024;

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public static TheoryData<string> Styles => new() { "simple", "structured", "extended" };

    private static NbdClientOptions Options(string style, string export = "") => style switch
    {
        "simple" => new NbdClientOptions { ExportName = export, StructuredReplies = false },
        "structured" => new NbdClientOptions { ExportName = export },
        "extended" => new NbdClientOptions { ExportName = export, ExtendedHeaders = true },
        _ => throw new ArgumentOutOfRangeException(nameof(style)),
    };

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public async Task Go_reports_size_flags_block_sizes_and_description()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device, description: "test disk"));
        await using var client = await server.ConnectAsync(new NbdClientOptions { ExportName = "disk" });

        Assert.Equal((ulong)Size, client.Export.Size);
        Assert.Equal("disk", client.Export.Name);
        Assert.Equal("test disk", client.Export.Description);
        var expected = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
            | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero
            | NbdTransmissionFlags.SendCache | NbdTransmissionFlags.CanMultiConn | NbdTransmissionFlags.SendDf;
        Assert.Equal(expected, client.Export.Flags);
        Assert.Equal((1u, 4096u, 32u << 20), (client.Export.MinimumBlockSize, client.Export.PreferredBlockSize, client.Export.MaximumBlockSize));
        Assert.Equal(NbdReplyStyle.Structured, client.ReplyStyle);
        Assert.Equal(NbdLimits.BaseAllocationContextId, client.BaseAllocationContextId);
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Written_data_reads_back_in_every_reply_style(string style)
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));
        Assert.Equal(style switch { "simple" => NbdReplyStyle.Simple, "structured" => NbdReplyStyle.Structured, _ => NbdReplyStyle.Extended }, client.ReplyStyle);

        var data = Pattern(1 << 20, 1);
        await client.WriteAsync(12345, data, NbdCommandFlags.Fua).WaitAsync(Timeout);
        var back = new byte[data.Length];
        await client.ReadAsync(12345, back).WaitAsync(Timeout);

        Assert.Equal(data, back);
        Assert.Equal(data, device.Data.Slice(12345, data.Length).ToArray());
        Assert.Equal(1, device.FuaWrites);
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Zero_filled_reads_come_back_as_zeroes_whether_sent_as_hole_or_data(string style)
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));
        var buffer = Pattern(256 * 1024, 2);
        await client.ReadAsync(0, buffer).WaitAsync(Timeout);
        Assert.All(buffer, b => Assert.Equal(0, b));
        buffer = Pattern(256 * 1024, 3);
        await client.ReadAsync(0, buffer, NbdCommandFlags.DontFragment).WaitAsync(Timeout);
        Assert.All(buffer, b => Assert.Equal(0, b));
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Large_write_payloads_are_received_in_place_and_read_back_intact(string style)
    {
        var device = new MemoryBlockDevice(Size);
        const int chunk = 1 << 20;
        var data = Pattern(16 * chunk, 11);
        var big = Pattern(32 * chunk, 12);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));
        // Four 1 MiB writes in flight at a time, as a sequential writer at queue depth 4.
        for (var i = 0; i < 16; i += 4)
        {
            await Task.WhenAll(Enumerable.Range(i, 4).Select(j => client.WriteAsync((ulong)j * chunk, data.AsMemory(j * chunk, chunk))))
                .WaitAsync(Timeout);
        }
        // And one of 32 MiB: more than the receive pipe holds before it pauses the socket loop.
        await client.WriteAsync(32 * chunk, big).WaitAsync(Timeout);
        var inPlace = server.Server.PayloadBytesReceivedInPlace;

        var back = new byte[chunk];
        for (var j = 0; j < 16; j++)
        {
            await client.ReadAsync((ulong)j * chunk, back).WaitAsync(Timeout);
            Assert.True(data.AsSpan(j * chunk, chunk).SequenceEqual(back), $"MiB {j} differs");
        }
        for (var j = 0; j < 32; j++)
        {
            await client.ReadAsync((ulong)(32 + j) * chunk, back).WaitAsync(Timeout);
            Assert.True(big.AsSpan(j * chunk, chunk).SequenceEqual(back), $"MiB {j} of the 32 MiB write differs");
        }
        // Only what arrived before the pipe was drained (a segment or so per payload) is copied out of it.
        Assert.True(inPlace >= (data.Length + big.Length) / 4, $"{inPlace} of {data.Length + big.Length} payload bytes received in place");
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Sixty_four_requests_in_flight_complete_out_of_order_with_correct_data(string style)
    {
        var device = new MemoryBlockDevice(Size);
        var chunk = 64 * 1024;
        var data = Pattern(64 * chunk, 4);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));
        var writes = new List<Task>();
        for (var i = 0; i < 64; i++)
        {
            writes.Add(client.WriteAsync((ulong)(i * chunk), data.AsMemory(i * chunk, chunk)));
        }
        await Task.WhenAll(writes).WaitAsync(Timeout);

        // Earlier offsets are delayed longer, so replies arrive in reverse order.
        var completionOrder = new List<int>();
        device.ReadDelay = offset => TimeSpan.FromMilliseconds(5 * (64 - offset / chunk));
        var buffers = new byte[64][];
        var reads = new List<Task>();
        for (var i = 0; i < 64; i++)
        {
            var index = i;
            buffers[i] = new byte[chunk];
            reads.Add(client.ReadAsync((ulong)(i * chunk), buffers[i]).ContinueWith(t =>
            {
                t.GetAwaiter().GetResult();
                lock (completionOrder)
                {
                    completionOrder.Add(index);
                }
            }, TaskScheduler.Default));
        }
        await Task.WhenAll(reads).WaitAsync(Timeout);

        for (var i = 0; i < 64; i++)
        {
            Assert.Equal(data.AsSpan(i * chunk, chunk).ToArray(), buffers[i]);
        }
        Assert.NotEqual(Enumerable.Range(0, 64), completionOrder);
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Zero_length_read_and_write_succeed_without_payload(string style)
    {
        await using var server = InProcessServer.Start(new NbdExport("disk", new MemoryBlockDevice(Size)));
        await using var client = await server.ConnectAsync(Options(style));
        await client.ReadAsync(4096, Memory<byte>.Empty).WaitAsync(Timeout);
        await client.WriteAsync(4096, ReadOnlyMemory<byte>.Empty).WaitAsync(Timeout);
        await client.ReadAsync(0, new byte[16]).WaitAsync(Timeout);
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Read_beyond_the_end_gets_EINVAL_and_the_connection_lives_on(string style)
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));

        var error = await Assert.ThrowsAsync<NbdException>(() => client.ReadAsync((ulong)Size - 512, new byte[1024]).WaitAsync(Timeout));
        Assert.Equal(NbdErrno.InvalidArgument, error.Error);

        await client.ReadAsync((ulong)Size - 512, new byte[512]).WaitAsync(Timeout);
    }

    [Theory]
    [MemberData(nameof(Styles))]
    public async Task Write_and_zero_beyond_the_end_get_ENOSPC_and_trim_EINVAL(string style)
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));

        Assert.Equal(NbdErrno.NoSpace, (await Assert.ThrowsAsync<NbdException>(() => client.WriteAsync((ulong)Size, new byte[1]).WaitAsync(Timeout))).Error);
        Assert.Equal(NbdErrno.NoSpace, (await Assert.ThrowsAsync<NbdException>(() => client.WriteZeroesAsync((ulong)Size - 1, 2).WaitAsync(Timeout))).Error);
        Assert.Equal(NbdErrno.InvalidArgument, (await Assert.ThrowsAsync<NbdException>(() => client.TrimAsync(ulong.MaxValue - 1, 4096).WaitAsync(Timeout))).Error);
        await client.WriteAsync(0, new byte[] { 1 }).WaitAsync(Timeout);
        Assert.Equal(1, device.Data[0]);
    }

    [Fact]
    public async Task Read_only_export_refuses_write_trim_and_zero_with_EPERM_and_advertises_it()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("ro", device, readOnly: true));
        await using var client = await server.ConnectAsync();

        Assert.True((client.Export.Flags & NbdTransmissionFlags.ReadOnly) != 0);
        Assert.Equal(0, (int)(client.Export.Flags & (NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes)));
        Assert.Equal(NbdErrno.PermissionDenied, (await Assert.ThrowsAsync<NbdException>(() => client.WriteAsync(0, new byte[4096]).WaitAsync(Timeout))).Error);
        Assert.Equal(NbdErrno.PermissionDenied, (await Assert.ThrowsAsync<NbdException>(() => client.TrimAsync(0, 4096).WaitAsync(Timeout))).Error);
        Assert.Equal(NbdErrno.PermissionDenied, (await Assert.ThrowsAsync<NbdException>(() => client.WriteZeroesAsync(0, 4096).WaitAsync(Timeout))).Error);
        await client.ReadAsync(0, new byte[4096]).WaitAsync(Timeout);
    }

    [Theory]
    [InlineData("simple")]
    [InlineData("extended")]
    public async Task Write_over_32_MiB_gets_EINVAL_its_payload_is_skipped_and_the_connection_lives_on(string style)
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));
        var big = new byte[NbdLimits.MaxPayload + 4096];
        big.AsSpan().Fill(0x5a);

        var error = await Assert.ThrowsAsync<NbdException>(() => client.WriteAsync(0, big).WaitAsync(Timeout));

        Assert.Equal(NbdErrno.InvalidArgument, error.Error);
        Assert.Equal(0, device.Data[0]);
        var data = Pattern(4096, 5);
        await client.WriteAsync(4096, data).WaitAsync(Timeout);
        var back = new byte[4096];
        await client.ReadAsync(4096, back).WaitAsync(Timeout);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Read_over_32_MiB_gets_EINVAL()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        var error = await Assert.ThrowsAsync<NbdException>(() => client.ReadAsync(0, new byte[NbdLimits.MaxPayload + 1]).WaitAsync(Timeout));
        Assert.Equal(NbdErrno.InvalidArgument, error.Error);
        await client.ReadAsync(0, new byte[NbdLimits.MaxPayload]).WaitAsync(Timeout);
    }

    [Fact]
    public async Task Garbage_after_negotiation_closes_only_that_connection()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var good = await server.ConnectAsync();

        using (var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await raw.ConnectAsync("127.0.0.1", server.Port);
            var greeting = new byte[18];
            await ReceiveExactlyAsync(raw, greeting);
            await raw.SendAsync(new byte[] { 0, 0, 0, 3 }); // fixed newstyle + no zeroes
            var exportName = new System.Buffers.ArrayBufferWriter<byte>();
            NbdClientMessageWriter.WriteExportNameOption(exportName, "disk");
            await raw.SendAsync(exportName.WrittenMemory);
            await ReceiveExactlyAsync(raw, new byte[10]);
            await raw.SendAsync(Pattern(100, 6));
            // The server closes: a read returns 0 bytes (or a reset).
            var buffer = new byte[64];
            int received;
            try
            {
                received = await raw.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Timeout);
            }
            catch (SocketException)
            {
                received = 0;
            }
            Assert.Equal(0, received);
        }

        await good.WriteAsync(0, new byte[] { 7 }).WaitAsync(Timeout);
        await using var another = await server.ConnectAsync();
        var back = new byte[1];
        await another.ReadAsync(0, back).WaitAsync(Timeout);
        Assert.Equal(7, back[0]);
    }

    [Fact]
    public async Task Garbage_instead_of_options_closes_the_connection()
    {
        await using var server = InProcessServer.Start(new NbdExport("disk", new MemoryBlockDevice(Size)));
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync("127.0.0.1", server.Port);
        await ReceiveExactlyAsync(raw, new byte[18]);
        await raw.SendAsync(new byte[] { 0, 0, 0, 1 });
        await raw.SendAsync(Pattern(64, 7));
        int received;
        try
        {
            received = await raw.ReceiveAsync(new byte[64].AsMemory()).AsTask().WaitAsync(Timeout);
        }
        catch (SocketException)
        {
            received = 0;
        }
        Assert.Equal(0, received);
    }

    [Theory]
    [InlineData("structured")]
    [InlineData("extended")]
    public async Task Block_status_reports_holes_and_data_and_REQ_ONE_gives_one_extent(string style)
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync(Options(style));
        await client.WriteAsync(65536, new byte[8192]).WaitAsync(Timeout);

        var extents = await client.BlockStatusAsync(0, 1 << 20).WaitAsync(Timeout);
        Assert.Equal(
            [
                new NbdBlockDescriptor(65536, 3),
                new NbdBlockDescriptor(8192, 0),
                new NbdBlockDescriptor((1 << 20) - 65536 - 8192, 3),
            ],
            extents);

        var one = await client.BlockStatusAsync(65536, 1 << 20, NbdCommandFlags.ReqOne).WaitAsync(Timeout);
        Assert.Equal([new NbdBlockDescriptor(8192, 0)], one);

        await client.TrimAsync(65536, 8192).WaitAsync(Timeout);
        Assert.Equal([new NbdBlockDescriptor(1 << 20, 3)], await client.BlockStatusAsync(0, 1 << 20).WaitAsync(Timeout));
    }

    [Fact]
    public async Task Block_status_without_a_negotiated_meta_context_is_EINVAL()
    {
        await using var server = InProcessServer.Start(new NbdExport("disk", new MemoryBlockDevice(Size)));
        await using var client = await server.ConnectAsync(new NbdClientOptions { BaseAllocation = false });
        Assert.Null(client.BaseAllocationContextId);
        var error = await Assert.ThrowsAsync<NbdException>(() => client.BlockStatusAsync(0, 4096).WaitAsync(Timeout));
        Assert.Equal(NbdErrno.InvalidArgument, error.Error);
    }

    [Fact]
    public async Task Extended_headers_carry_a_trim_longer_than_4_GiB()
    {
        var size = 8L << 30;
        var device = new SizedOnlyDevice(size);
        await using var server = InProcessServer.Start(new NbdExport("big", device));
        await using var client = await server.ConnectAsync(Options("extended"));
        await client.TrimAsync(0, 5UL << 30).WaitAsync(Timeout);
        Assert.Equal((0L, 5L << 30), device.LastTrim);
        var extents = await client.BlockStatusAsync(0, 6UL << 30).WaitAsync(Timeout);
        Assert.Equal([new NbdBlockDescriptor(6UL << 30, 0)], extents);
    }

    [Theory]
    [InlineData(BlockError.NoSpace, NbdErrno.NoSpace)]
    [InlineData(BlockError.Io, NbdErrno.Io)]
    [InlineData(BlockError.Permission, NbdErrno.PermissionDenied)]
    [InlineData(BlockError.NotSupported, NbdErrno.NotSupported)]
    [InlineData(BlockError.Overflow, NbdErrno.Overflow)]
    [InlineData(BlockError.Shutdown, NbdErrno.Shutdown)]
    [InlineData(BlockError.Invalid, NbdErrno.InvalidArgument)]
    public async Task Device_errors_map_to_their_errno_for_reads_and_writes(BlockError error, NbdErrno expected)
    {
        var device = new MemoryBlockDevice(Size) { Fault = (1 << 20, 4096, error) };
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        Assert.Equal(expected, (await Assert.ThrowsAsync<NbdException>(() => client.WriteAsync(1 << 20, new byte[512]).WaitAsync(Timeout))).Error);
        Assert.Equal(expected, (await Assert.ThrowsAsync<NbdException>(() => client.ReadAsync(1 << 20, new byte[512]).WaitAsync(Timeout))).Error);
        await client.ReadAsync(0, new byte[512]).WaitAsync(Timeout);
    }

    [Fact]
    public async Task Fast_zero_on_a_device_without_it_fails_with_ENOTSUP_and_plain_zero_works()
    {
        var features = BlockDeviceFeatures.Flush | BlockDeviceFeatures.Zero | BlockDeviceFeatures.BlockStatus;
        var device = new MemoryBlockDevice(Size, features);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        Assert.Equal(0, (int)(client.Export.Flags & NbdTransmissionFlags.SendFastZero));
        await client.WriteAsync(0, Pattern(8192, 8)).WaitAsync(Timeout);

        var error = await Assert.ThrowsAsync<NbdException>(() => client.WriteZeroesAsync(0, 8192, NbdCommandFlags.FastZero).WaitAsync(Timeout));
        Assert.Equal(NbdErrno.NotSupported, error.Error);
        await client.WriteZeroesAsync(0, 8192, NbdCommandFlags.NoHole).WaitAsync(Timeout);
        Assert.All(device.Data[..8192].ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Zero_without_no_hole_deallocates_and_with_no_hole_stays_allocated()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        await client.WriteAsync(0, Pattern(16384, 9)).WaitAsync(Timeout);
        await client.WriteZeroesAsync(0, 8192, NbdCommandFlags.FastZero).WaitAsync(Timeout);
        await client.WriteZeroesAsync(8192, 8192, NbdCommandFlags.NoHole).WaitAsync(Timeout);
        Assert.Equal([new NbdBlockDescriptor(8192, 3), new NbdBlockDescriptor(8192, 0)], await client.BlockStatusAsync(0, 16384).WaitAsync(Timeout));
        Assert.All(device.Data[..16384].ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Flush_and_cache_reach_the_device()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        await client.FlushAsync().WaitAsync(Timeout);
        await client.CacheAsync(0, 1 << 20).WaitAsync(Timeout);
        Assert.Equal(1, device.Flushes);
        Assert.Equal(1, device.Caches);
    }

    [Fact]
    public async Task Unknown_command_and_unknown_flags_get_EINVAL_and_the_connection_lives_on()
    {
        await using var server = InProcessServer.Start(new NbdExport("disk", new MemoryBlockDevice(Size)));
        await using var client = await server.ConnectAsync();
        Assert.Equal(NbdErrno.InvalidArgument,
            (await Assert.ThrowsAsync<NbdException>(() => client.SendRawAsync((NbdCommand)42, 0, 0, 0).WaitAsync(Timeout))).Error);
        Assert.Equal(NbdErrno.InvalidArgument,
            (await Assert.ThrowsAsync<NbdException>(() => client.SendRawAsync(NbdCommand.Flush, (NbdCommandFlags)0x100, 0, 0).WaitAsync(Timeout))).Error);
        await client.FlushAsync().WaitAsync(Timeout);
    }

    [Fact]
    public async Task Unknown_export_is_refused_on_GO_and_the_old_EXPORT_NAME_path_serves_known_ones()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        var refused = await Assert.ThrowsAsync<NbdNegotiationException>(() => server.ConnectAsync(new NbdClientOptions { ExportName = "nope" }));
        Assert.Equal(NbdOptionReplyType.ErrUnknown, refused.Reply);

        await using var old = await server.ConnectAsync(new NbdClientOptions { ExportName = "disk", UseExportNameOption = true });
        Assert.Equal((ulong)Size, old.Export.Size);
        Assert.Equal(NbdReplyStyle.Simple, old.ReplyStyle);
        await old.WriteAsync(0, new byte[] { 9 }).WaitAsync(Timeout);
        Assert.Equal(9, device.Data[0]);

        await Assert.ThrowsAsync<NbdNegotiationException>(() => server.ConnectAsync(new NbdClientOptions { ExportName = "nope", UseExportNameOption = true }));
    }

    [Fact]
    public async Task List_names_every_export_with_its_description_and_the_empty_name_is_the_first()
    {
        var first = new MemoryBlockDevice(1 << 20);
        var second = new MemoryBlockDevice(2 << 20);
        await using var server = InProcessServer.Start(new NbdExport("a", first, description: "first"), new NbdExport("b", second));
        var stream = await NbdClient.OpenTcpStreamAsync("127.0.0.1", server.Port);
        var list = await NbdClient.ListExportsAsync(stream).WaitAsync(Timeout);
        Assert.Equal([new NbdExportListing("a", "first"), new NbdExportListing("b", "")], list);

        await using var byDefault = await server.ConnectAsync();
        Assert.Equal(1UL << 20, byDefault.Export.Size);
        await using var named = await server.ConnectAsync(new NbdClientOptions { ExportName = "b" });
        Assert.Equal(2UL << 20, named.Export.Size);
    }

    [Fact]
    public async Task Write_on_one_connection_flush_then_read_on_another_sees_it()
    {
        var device = new MemoryBlockDevice(Size);
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var writer = await server.ConnectAsync();
        await using var reader = await server.ConnectAsync();
        Assert.True((writer.Export.Flags & NbdTransmissionFlags.CanMultiConn) != 0);
        var data = Pattern(65536, 10);
        await writer.WriteAsync(1 << 20, data).WaitAsync(Timeout);
        await writer.FlushAsync().WaitAsync(Timeout);
        var back = new byte[data.Length];
        await reader.ReadAsync(1 << 20, back).WaitAsync(Timeout);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Stopping_answers_requests_already_in_flight_then_flushes_and_disposes_the_export()
    {
        var device = new MemoryBlockDevice(Size) { WriteDelay = TimeSpan.FromMilliseconds(500) };
        var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        var write = client.WriteAsync(0, new byte[] { 1, 2, 3 });
        await Task.Delay(100);

        await server.DisposeAsync();

        await write.WaitAsync(Timeout);
        Assert.Equal(1, device.Data[0]);
        Assert.True(device.Disposed);
        Assert.Equal(1, device.FlushesAtDispose);
    }

    [Fact]
    public async Task Disconnect_lets_in_flight_requests_finish_first()
    {
        var device = new MemoryBlockDevice(Size) { WriteDelay = TimeSpan.FromMilliseconds(300) };
        await using var server = InProcessServer.Start(new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        var write = client.WriteAsync(0, new byte[] { 4 });
        await client.DisconnectAsync();
        await write.WaitAsync(Timeout);
        Assert.Equal(4, device.Data[0]);
    }

    [Fact]
    public async Task Back_pressure_bounds_requests_in_flight_per_connection()
    {
        var device = new MemoryBlockDevice(Size) { WriteDelay = TimeSpan.FromMilliseconds(200) };
        await using var server = InProcessServer.Start(new NbdSessionOptions { MaxInFlight = 4 }, new NbdExport("disk", device));
        await using var client = await server.ConnectAsync();
        var started = DateTime.UtcNow;
        var writes = Enumerable.Range(0, 12).Select(i => client.WriteAsync((ulong)(i * 4096), new byte[4096])).ToArray();
        await Task.WhenAll(writes).WaitAsync(Timeout);
        // 12 writes of 200 ms with at most 4 at a time take at least 3 rounds.
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(550), $"took {(DateTime.UtcNow - started).TotalMilliseconds} ms");
    }

    [Fact]
    public async Task Unix_socket_listener_serves_the_export()
    {
        var dir = Directory.CreateTempSubdirectory("nbdqcow-server-test-");
        try
        {
            var path = Path.Combine(dir.FullName, "nbd.sock");
            var registry = new ExportRegistry();
            registry.Add(new NbdExport("disk", new MemoryBlockDevice(Size)));
            var server = new NbdServer(registry);
            server.ListenUnix(path);
            await using (var client = await NbdClient.ConnectUnixAsync(path, new NbdClientOptions()))
            {
                await client.WriteAsync(0, new byte[] { 5 }).WaitAsync(Timeout);
                var back = new byte[1];
                await client.ReadAsync(0, back).WaitAsync(Timeout);
                Assert.Equal(5, back[0]);
            }
            await server.StopAsync(Timeout);
            await registry.DisposeAsync();
            Assert.False(File.Exists(path));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static async Task ReceiveExactlyAsync(Socket socket, byte[] buffer)
    {
        var at = 0;
        while (at < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(at)).AsTask().WaitAsync(Timeout);
            Assert.NotEqual(0, n);
            at += n;
        }
    }

    /// <summary>A device with a size but no storage, for requests whose length only extended headers can carry.</summary>
    private sealed class SizedOnlyDevice(long size) : IBlockDevice
    {
        public (long Offset, long Length) LastTrim { get; private set; }
        public long Size => size;
        public BlockDeviceFeatures Features => BlockDeviceFeatures.Trim | BlockDeviceFeatures.BlockStatus | BlockDeviceFeatures.Flush;
        public BlockSizeHints BlockSizes => new(1, 4096, 32 << 20);
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) { buffer.Span.Clear(); return default; }
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) => default;
        public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) => default;
        public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) { LastTrim = (offset, length); return default; }
        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;
        public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) => default;
        public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
        {
            extents.Add(new BlockExtent(length, BlockExtentFlags.Data));
            return default;
        }
        public ValueTask DisposeAsync() => default;
    }
}
