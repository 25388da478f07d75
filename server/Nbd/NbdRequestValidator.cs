using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Server.Exports;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// Every check a transmission request passes before dispatch, in one place (as nbdkit validates before calling a
/// plugin): known flags, payload limit, range against the export size, read-only, what the export supports, and
/// the negotiated state. Dispatch then only calls the device. Pure and allocation-free on the accepted path.
/// </summary>
public static class NbdRequestValidator
{
    /// <summary>Flags this server understands on any command; others are refused with EINVAL.</summary>
    public const NbdCommandFlags KnownCommandFlags = NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.DontFragment
        | NbdCommandFlags.ReqOne | NbdCommandFlags.FastZero;

    /// <param name="oversized">A WRITE whose payload was over the limit and read past rather than kept.</param>
    /// <param name="anyMetaContext">The client negotiated at least one meta context (BLOCK_STATUS needs one).</param>
    public static RequestRefusal Check(in NbdRequest request, NbdExport export, bool oversized, bool anyMetaContext)
    {
        if ((request.Flags & ~KnownCommandFlags) != 0)
            return new(NbdErrno.InvalidArgument, "unknown command flags");
        var offset = request.Offset;
        var length = request.Length;
        switch (request.Command)
        {
            case NbdCommand.Read:
                if (length > NbdLimits.MaxPayload)
                    return new(NbdErrno.InvalidArgument, "read larger than 32 MiB");
                if (!InRange(export, offset, length))
                    return new(NbdErrno.InvalidArgument, "read beyond the end of the export");
                return RequestRefusal.None;

            case NbdCommand.Write:
                if (oversized)
                    return new(NbdErrno.InvalidArgument, "write larger than 32 MiB");
                if (export.ReadOnly)
                    return new(NbdErrno.PermissionDenied, "export is read-only");
                if (!InRange(export, offset, length))
                    return new(NbdErrno.NoSpace, "write beyond the end of the export");
                return RequestRefusal.None;

            case NbdCommand.Flush:
                return RequestRefusal.None;

            case NbdCommand.Trim:
                if (export.ReadOnly)
                    return new(NbdErrno.PermissionDenied, "export is read-only");
                if (!InRange(export, offset, length))
                    return new(NbdErrno.InvalidArgument, "trim beyond the end of the export");
                return RequestRefusal.None;

            case NbdCommand.WriteZeroes:
                if (export.ReadOnly)
                    return new(NbdErrno.PermissionDenied, "export is read-only");
                if (!InRange(export, offset, length))
                    return new(NbdErrno.NoSpace, "write zeroes beyond the end of the export");
                if ((request.Flags & NbdCommandFlags.FastZero) != 0 && (export.Features & BlockDeviceFeatures.FastZero) == 0)
                    return new(NbdErrno.NotSupported, "no fast zero on this export");
                return RequestRefusal.None;

            case NbdCommand.Cache:
                if (!InRange(export, offset, length))
                    return new(NbdErrno.InvalidArgument, "cache beyond the end of the export");
                return RequestRefusal.None;

            case NbdCommand.BlockStatus:
                if (!anyMetaContext)
                    return new(NbdErrno.InvalidArgument, "no meta context negotiated");
                if (length == 0 || !InRange(export, offset, length))
                    return new(NbdErrno.InvalidArgument, "block status range invalid or beyond the end");
                return RequestRefusal.None;

            default:
                return new(NbdErrno.InvalidArgument, $"unknown command {(ushort)request.Command}");
        }
    }

    /// <summary>Whether a reply error goes out as a structured error chunk (commands whose success carries chunks).</summary>
    public static bool ErrorAsChunk(NbdCommand command) => command is NbdCommand.Read or NbdCommand.BlockStatus;

    private static bool InRange(NbdExport export, ulong offset, ulong length)
    {
        var size = (ulong)export.Size;
        return offset <= size && length <= size - offset;
    }
}
