using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>The one place requests are checked before dispatch: each refusal's errno and text, and what passes.</summary>
public sealed class NbdRequestValidatorTests
{
    private const ulong Size = 1 << 20;

    private static NbdExport Export(bool readOnly = false, BlockDeviceFeatures? features = null) =>
        new("e", new MemoryBlockDevice((long)Size, features), readOnly);

    private static RequestRefusal Check(NbdCommand command, ulong offset, ulong length, NbdCommandFlags flags = NbdCommandFlags.None,
        NbdExport? export = null, bool oversized = false, bool metaContext = true) =>
        NbdRequestValidator.Check(new NbdRequest(flags, command, 1, offset, length), export ?? Export(), oversized, metaContext);

    [Theory]
    [InlineData(NbdCommand.Read, 0, Size, true)]
    [InlineData(NbdCommand.Read, Size, 0, true)]
    [InlineData(NbdCommand.Write, Size - 1, 1, false)]
    [InlineData(NbdCommand.Flush, 0, 0, false)]
    [InlineData(NbdCommand.Trim, 0, Size, false)]
    [InlineData(NbdCommand.WriteZeroes, 4096, 4096, false)]
    [InlineData(NbdCommand.Cache, 0, Size, false)]
    [InlineData(NbdCommand.BlockStatus, 0, 1, true)]
    public void Requests_inside_the_export_pass(NbdCommand command, ulong offset, ulong length, bool chunked)
    {
        Assert.False(Check(command, offset, length).Refused);
        Assert.Equal(chunked, NbdRequestValidator.ErrorAsChunk(command));
    }

    [Theory]
    [InlineData(NbdCommand.Read, 0, (32u << 20) + 1, NbdErrno.InvalidArgument, "read larger than 32 MiB")]
    [InlineData(NbdCommand.Read, 1, Size, NbdErrno.InvalidArgument, "read beyond the end of the export")]
    [InlineData(NbdCommand.Write, Size, 1, NbdErrno.NoSpace, "write beyond the end of the export")]
    [InlineData(NbdCommand.Trim, ulong.MaxValue, 2, NbdErrno.InvalidArgument, "trim beyond the end of the export")]
    [InlineData(NbdCommand.WriteZeroes, Size - 1, 2, NbdErrno.NoSpace, "write zeroes beyond the end of the export")]
    [InlineData(NbdCommand.Cache, Size + 1, 0, NbdErrno.InvalidArgument, "cache beyond the end of the export")]
    [InlineData(NbdCommand.BlockStatus, 0, 0, NbdErrno.InvalidArgument, "block status range invalid or beyond the end")]
    [InlineData((NbdCommand)77, 0, 0, NbdErrno.InvalidArgument, "unknown command 77")]
    public void Out_of_range_and_unknown_requests_are_refused(NbdCommand command, ulong offset, ulong length, NbdErrno errno, string message) =>
        Assert.Equal(new RequestRefusal(errno, message), Check(command, offset, length));

    [Fact]
    public void Flags_read_only_fast_zero_oversized_and_meta_contexts_are_checked_in_order()
    {
        Assert.Equal(new RequestRefusal(NbdErrno.InvalidArgument, "unknown command flags"),
            Check(NbdCommand.Write, Size, 1, (NbdCommandFlags)0x8000, Export(readOnly: true)));
        var readOnly = Export(readOnly: true);
        foreach (var command in new[] { NbdCommand.Write, NbdCommand.Trim, NbdCommand.WriteZeroes })
            Assert.Equal(new RequestRefusal(NbdErrno.PermissionDenied, "export is read-only"), Check(command, Size, 1, export: readOnly));
        Assert.False(Check(NbdCommand.Read, 0, 1, export: readOnly).Refused);
        Assert.Equal(new RequestRefusal(NbdErrno.InvalidArgument, "write larger than 32 MiB"),
            Check(NbdCommand.Write, 0, 64u << 20, oversized: true, export: readOnly));
        Assert.Equal(new RequestRefusal(NbdErrno.NotSupported, "no fast zero on this export"),
            Check(NbdCommand.WriteZeroes, 0, 1, NbdCommandFlags.FastZero, Export(features: BlockDeviceFeatures.Zero)));
        Assert.False(Check(NbdCommand.WriteZeroes, 0, 1, NbdCommandFlags.FastZero,
            Export(features: BlockDeviceFeatures.Zero | BlockDeviceFeatures.FastZero)).Refused);
        Assert.Equal(new RequestRefusal(NbdErrno.InvalidArgument, "no meta context negotiated"),
            Check(NbdCommand.BlockStatus, Size, 0, metaContext: false));
    }
}
