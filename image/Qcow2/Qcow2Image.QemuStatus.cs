using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// qemu:allocation-depth and qemu:dirty-bitmap:NAME, answered as qemu-nbd answers them (-A, -B NAME): depth counts
// layers from this image (1) down the backing chain; a bitmap reads as it is at the moment of the request, a bitmap
// this image keeps up to date (enabled, opened for writing) included.
public sealed partial class Qcow2Image : IQemuStatusSource
{
    private readonly Lock _bitmapViewLock = new();
    /// <summary>Bitmaps loaded read-only for export (disabled ones, or any on a read-only open); they never change.</summary>
    private readonly Dictionary<string, Qcow2TrackedBitmap> _bitmapViews = new(StringComparer.Ordinal);
    private long _bitmapViewBytes;

    public async ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default)
    {
        long end = offset + length;
        int first = extents.Count;
        while (offset < end && extents.Count - first < MaxExtentsPerQuery)
        {
            var mapping = await LookupAsync(offset, end - offset, cancellationToken).ConfigureAwait(false);
            if (mapping.Kind is Qcow2ClusterKind.Unallocated or Qcow2ClusterKind.UnallocatedWithHostCluster)
            {
                long covered = await AppendBackingDepthAsync(offset, mapping.Length, extents, first, cancellationToken).ConfigureAwait(false);
                if (covered < mapping.Length)
                    return; // a prefix of the range, bounded like the base:allocation answer
            }
            else
                AppendStatus(extents, first, mapping.Length, 1); // data, compressed and zero clusters all belong to this layer
            offset += mapping.Length;
        }
    }

    /// <summary>Appends the chain's depth for an unallocated run; returns how much of it is covered (bounded by <see cref="MaxExtentsPerQuery"/>).</summary>
    private async ValueTask<long> AppendBackingDepthAsync(long offset, long length, List<StatusExtent> extents, int first, CancellationToken cancellationToken)
    {
        long within = Backing is IQemuStatusSource ? Math.Clamp(Backing.Size - offset, 0, length) : 0;
        if (within > 0)
        {
            var backing = (IQemuStatusSource)Backing!;
            var inner = new List<StatusExtent>();
            long done = 0;
            while (done < within)
            {
                if (extents.Count - first >= MaxExtentsPerQuery)
                    return done;
                inner.Clear();
                await backing.GetAllocationDepthAsync(offset + done, within - done, inner, cancellationToken).ConfigureAwait(false);
                if (inner.Count == 0)
                    throw new BlockDeviceException(BlockError.Io, $"backing file {BackingPath} returned no allocation depth at 0x{offset + done:x}");
                foreach (var extent in inner)
                {
                    long n = Math.Min(extent.Length, within - done);
                    if (n <= 0)
                        break;
                    AppendStatus(extents, first, n, extent.Value == 0 ? 0 : extent.Value + 1);
                    done += n;
                    if (extents.Count - first >= MaxExtentsPerQuery)
                        return done;
                }
            }
        }
        // Past the end of a shorter backing file the zeroes it reads as belong to that layer (qemu counts them so).
        if (length > within)
            AppendStatus(extents, first, length - within, Backing is null ? 0u : 2u);
        return length;
    }

    private static void AppendStatus(List<StatusExtent> extents, int first, long length, uint value)
    {
        if (extents.Count > first && extents[^1].Value == value)
            extents[^1] = new StatusExtent(extents[^1].Length + length, value);
        else
            extents.Add(new StatusExtent(length, value));
    }

    public string? CheckBitmapExportable(string bitmap) => ResolveBitmap(bitmap, out var problem) is null ? problem : null;

    public ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default)
    {
        var resolved = ResolveBitmap(bitmap, out var problem)
            ?? throw new BlockDeviceException(BlockError.Invalid, $"{Path}: bitmap \"{bitmap}\": {problem}");
        AppendDirtyExtents(resolved, offset, Math.Min(offset + length, Size), extents, MaxExtentsPerQuery);
        return default;
    }

    /// <summary>
    /// The bitmap's bits as they are now, or null with the reason it cannot be exported. As qemu-nbd -B looks a name
    /// up: in this image, then down the backing chain; the first layer holding a bitmap of that name answers, usable
    /// or not. A backing file's bitmap is read as stored (backing files are opened read-only and never marked).
    /// </summary>
    private Qcow2TrackedBitmap? ResolveBitmap(string name, out string? problem)
    {
        for (var layer = this; layer is not null; layer = layer.Backing as Qcow2Image)
        {
            if (!layer.HasBitmapNamed(name))
                continue;
            var bitmap = layer.ResolveOwnBitmap(name, out problem);
            if (problem is not null && layer != this)
                problem = $"in backing file {layer.Path}: {problem}";
            return bitmap;
        }
        problem = DescribeMissingBitmap();
        return null;
    }

    private bool HasBitmapNamed(string name)
    {
        foreach (var entry in BitmapDirectory)
            if (entry.Name == name)
                return true;
        return false;
    }

    /// <summary>Why a name is in no layer: the bitmaps each layer has, so the right name can be picked.</summary>
    private string DescribeMissingBitmap()
    {
        var layers = new List<string>();
        for (var layer = this; layer is not null; layer = layer.Backing as Qcow2Image)
            if (layer.BitmapDirectory.Count > 0)
                layers.Add(string.Join(", ", layer.BitmapDirectory.Select(e => e.Name)) + (Backing is null ? "" : $" in {layer.Path}"));
        if (Backing is null)
            return layers.Count == 0 ? "the image has no persistent bitmaps" : $"no such persistent bitmap (have: {layers[0]})";
        return layers.Count == 0
            ? "neither the image nor its backing files have persistent bitmaps"
            : $"no such persistent bitmap in the image or its backing files (have: {string.Join("; ", layers)})";
    }

    /// <summary>This image's own bitmap named <paramref name="name"/> (which it has), or null with the reason it cannot be exported.</summary>
    private Qcow2TrackedBitmap? ResolveOwnBitmap(string name, out string? problem)
    {
        problem = null;
        if (_trackedBitmaps is { } tracked)
            foreach (var bitmap in tracked)
                if (bitmap.Entry.Name == name)
                    return bitmap;
        Qcow2BitmapDirectoryEntry? entry = null;
        long entryOffset = Header.Bitmaps is { } extension ? (long)extension.DirectoryOffset : 0;
        foreach (var candidate in BitmapDirectory)
        {
            if (candidate.Name == name)
            {
                entry = candidate;
                break;
            }
            entryOffset += Qcow2BitmapDirectory.EntrySize(candidate);
        }
        if (entry is null)
        {
            problem = DescribeMissingBitmap();
            return null;
        }
        if (_untrackableBitmaps.Contains(name))
        {
            problem = "too large or of a kind this server cannot track; it is marked in use (inconsistent)";
            return null;
        }
        if (entry.InUse)
        {
            // As qemu: a bitmap whose last writer did not close the image cleanly no longer says what changed.
            problem = "is inconsistent (marked in use: the image was not closed cleanly while it was tracked); " +
                "remove it (qemu-img bitmap --remove) and start a new full backup";
            return null;
        }
        if (ServedSnapshot is not null)
        {
            problem = $"bitmaps track the active image, not the internal snapshot '{ServedSnapshot.Name}' being served";
            return null;
        }
        lock (_bitmapViewLock)
        {
            if (_bitmapViews.TryGetValue(name, out var view))
                return view;
            view = TryLoadBitmap(entry, entryOffset, ref _bitmapViewBytes);
            if (view is null)
            {
                problem = entry.Type != Qcow2BitmapDirectoryEntry.DirtyTrackingType
                    ? $"is of type {entry.Type}, not a dirty tracking bitmap"
                    : "cannot be loaded (its table does not cover the disk, points outside the file, or bitmaps exceed the memory bound)";
                return null;
            }
            _bitmapViews.Add(name, view);
            return view;
        }
    }

    /// <summary>Runs of dirty (1) and clean (0) granules over [offset, end), clipped to the range.</summary>
    private static void AppendDirtyExtents(Qcow2TrackedBitmap bitmap, long offset, long end, List<StatusExtent> extents, int maxExtents)
    {
        int shift = bitmap.Entry.GranularityBits;
        var words = bitmap.Words;
        int added = 0;
        // A backing file's bitmap may cover less than the served disk: past its end everything is clean (as qemu).
        long covered = Math.Min(end, bitmap.BitCount << shift);
        while (offset < covered && added < maxExtents)
        {
            long bit = offset >> shift;
            long lastBit = (covered - 1) >> shift;
            bool dirty = IsDirty(words, bit);
            long next = bit + 1;
            while (next <= lastBit)
            {
                if ((next & 63) == 0 && next + 63 <= lastBit && Volatile.Read(ref words[next >> 6]) == (dirty ? ulong.MaxValue : 0UL))
                {
                    next += 64;
                    continue;
                }
                if (IsDirty(words, next) != dirty)
                    break;
                next++;
            }
            long runEnd = Math.Min(covered, next << shift);
            extents.Add(new StatusExtent(runEnd - offset, dirty ? 1u : 0u));
            offset = runEnd;
            added++;
        }
        if (offset < end && offset >= covered)
        {
            if (added > 0 && extents[^1].Value == 0)
                extents[^1] = new StatusExtent(extents[^1].Length + end - offset, 0);
            else if (added < maxExtents)
                extents.Add(new StatusExtent(end - offset, 0));
        }
    }

    private static bool IsDirty(ulong[] words, long bit)
    {
        long word = bit >> 6;
        return word < words.Length && (Volatile.Read(ref words[word]) & (1UL << (int)(bit & 63))) != 0;
    }
}
