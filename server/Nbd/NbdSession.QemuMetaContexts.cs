using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Server.Exports;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// qemu:allocation-depth and qemu:dirty-bitmap:NAME, negotiated and answered as qemu-nbd does (-A, -B NAME), so
/// backup tools (qemu's x-dirty-bitmap, nbdinfo --map) and chain-preserving copies can read them.
/// </summary>
public sealed partial class NbdSession
{
    private bool _allocationDepth;
    /// <summary>Indexes into the export's bitmaps selected with SET_META_CONTEXT, in selection order.</summary>
    private readonly List<int> _selectedBitmaps = [];

    private bool AnyMetaContext => _baseAllocation || _allocationDepth || _selectedBitmaps.Count > 0;

    private void ForgetQemuMetaContexts()
    {
        _allocationDepth = false;
        _selectedBitmaps.Clear();
    }

    /// <summary>Contexts chosen for another export (or before structured replies) do not carry over.</summary>
    private void KeepQemuMetaContextsFor(NbdExport export)
    {
        if (!ReferenceEquals(_metaContextExport, export) || _style == NbdReplyStyle.Simple)
        {
            ForgetQemuMetaContexts();
        }
    }

    private static bool OffersAllocationDepth(NbdExport export) => export.Device is IQemuStatusSource;

    /// <summary>LIST: the qemu contexts an empty query list, "qemu:", "qemu:dirty-bitmap:" or an exact name asks for.</summary>
    private void ListQemuMetaContexts(NbdOption option, NbdExport export, IReadOnlyList<string> queries)
    {
        var all = queries.Count == 0;
        var depth = false;
        var bitmaps = new bool[export.Bitmaps.Count];
        foreach (var query in queries)
        {
            all |= query == NbdQemuMetaContexts.Namespace;
            depth |= query == NbdQemuMetaContexts.AllocationDepth;
            for (var i = 0; i < bitmaps.Length; i++)
            {
                bitmaps[i] |= query == NbdQemuMetaContexts.DirtyBitmapPrefix || query == NbdQemuMetaContexts.DirtyBitmapPrefix + export.Bitmaps[i];
            }
        }
        if ((all || depth) && OffersAllocationDepth(export))
        {
            NbdServerMessageWriter.WriteMetaContextReply(_output, option, 0, NbdQemuMetaContexts.AllocationDepth);
        }
        for (var i = 0; i < bitmaps.Length; i++)
        {
            if (all || bitmaps[i])
            {
                NbdServerMessageWriter.WriteMetaContextReply(_output, option, 0, NbdQemuMetaContexts.DirtyBitmapPrefix + export.Bitmaps[i]);
            }
        }
    }

    /// <summary>SET: selects the qemu contexts named exactly; unknown names are ignored, as the spec asks.</summary>
    private void SetQemuMetaContexts(NbdOption option, NbdExport export, IReadOnlyList<string> queries)
    {
        ForgetQemuMetaContexts();
        foreach (var query in queries)
        {
            if (query == NbdQemuMetaContexts.AllocationDepth && OffersAllocationDepth(export) && !_allocationDepth)
            {
                _allocationDepth = true;
                NbdServerMessageWriter.WriteMetaContextReply(_output, option, NbdQemuMetaContexts.AllocationDepthContextId, query);
                continue;
            }
            if (!query.StartsWith(NbdQemuMetaContexts.DirtyBitmapPrefix, StringComparison.Ordinal))
            {
                continue;
            }
            for (var i = 0; i < export.Bitmaps.Count; i++)
            {
                if (query.Length == NbdQemuMetaContexts.DirtyBitmapPrefix.Length + export.Bitmaps[i].Length
                    && query.EndsWith(export.Bitmaps[i], StringComparison.Ordinal) && !_selectedBitmaps.Contains(i))
                {
                    _selectedBitmaps.Add(i);
                    NbdServerMessageWriter.WriteMetaContextReply(_output, option, NbdQemuMetaContexts.FirstBitmapContextId + (uint)i, query);
                }
            }
        }
    }

    /// <summary>
    /// Gathers every selected qemu context's extents before anything is sent, so a failure (an inactive image, a bitmap
    /// gone inconsistent) becomes one error reply rather than half a reply.
    /// </summary>
    private async Task CollectQemuStatusAsync(RequestWork work)
    {
        var request = work.Request;
        if (!_allocationDepth && _selectedBitmaps.Count == 0)
        {
            return;
        }
        var source = _export.Device as IQemuStatusSource
            ?? throw new BlockDeviceException(BlockError.NotSupported, "the export's image has no qemu block status");
        var extents = work.StatusExtents;
        if (_allocationDepth)
        {
            var before = extents.Count;
            await source.GetAllocationDepthAsync((long)request.Offset, (long)request.Length, extents).ConfigureAwait(false);
            work.StatusChunks.Add((NbdQemuMetaContexts.AllocationDepthContextId, before, extents.Count - before));
        }
        foreach (var index in _selectedBitmaps)
        {
            var before = extents.Count;
            await source.GetDirtyBitmapStatusAsync(_export.Bitmaps[index], (long)request.Offset, (long)request.Length, extents).ConfigureAwait(false);
            work.StatusChunks.Add((NbdQemuMetaContexts.FirstBitmapContextId + (uint)index, before, extents.Count - before));
        }
    }

    /// <summary>Writes the gathered qemu chunks (caller holds the send lock); the last one carries DONE.</summary>
    private void WriteQemuStatusChunks(RequestWork work)
    {
        var request = work.Request;
        var maxExtents = (request.Flags & NbdCommandFlags.ReqOne) != 0 ? 1 : MaxExtentsPerReply;
        for (var c = 0; c < work.StatusChunks.Count; c++)
        {
            var (contextId, first, available) = work.StatusChunks[c];
            var count = 0;
            var covered = 0UL;
            while (count < available && count < maxExtents && covered < request.Length)
            {
                covered += Math.Min((ulong)work.StatusExtents[first + count].Length, request.Length - covered);
                count++;
            }
            var flags = c == work.StatusChunks.Count - 1 ? NbdReplyFlags.Done : NbdReplyFlags.None;
            NbdServerMessageWriter.WriteBlockStatusHeader(_output, _style, flags, request.Cookie, request.Offset, contextId, count);
            var remaining = request.Length;
            for (var i = 0; i < count; i++)
            {
                var extent = work.StatusExtents[first + i];
                var take = Math.Min((ulong)extent.Length, remaining);
                NbdServerMessageWriter.WriteBlockDescriptor(_output, _style, take, extent.Value);
                remaining -= take;
            }
        }
    }
}
