using System.Text.Json;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// The side output for what recovery found but could not place: FOLDER/clusters.raw holds the clusters one after
/// another, FOLDER/index.json names for each its offset in clusters.raw, where it was in the damaged file, what it is
/// (l2-table, l2-data, orphan-data) and the guest offsets it could belong to, so an operator can place it by hand
/// (e.g. `qemu-io -c "write -s clusters.part GUEST LEN"` after extracting it with dd). Created on first use.
/// </summary>
internal sealed class LostAndFoundWriter : IDisposable
{
    public const string DataFileName = "clusters.raw";
    public const string IndexFileName = "index.json";
    private const int MaxListedCandidates = 64;

    private readonly string _folder;
    private readonly string _imagePath;
    private readonly int _clusterSize;
    private FileStream? _data;
    private FileStream? _indexStream;
    private Utf8JsonWriter? _index;

    public LostAndFoundWriter(string folder, string imagePath, int clusterSize)
    {
        _folder = folder;
        _imagePath = imagePath;
        _clusterSize = clusterSize;
    }

    public long Clusters { get; private set; }
    public bool Created => _data is not null;

    /// <summary>Appends one cluster and its index entry.</summary>
    public void Add(ReadOnlySpan<byte> cluster, long hostOffset, string kind, IReadOnlyList<long> candidateGuestOffsets,
        long candidateCount, string note, long? l2Table = null, int? l2Index = null, IReadOnlyList<long>? candidateSlots = null)
    {
        EnsureCreated();
        long at = _data!.Position;
        _data.Write(cluster);
        if (cluster.Length < _clusterSize) _data.Write(new byte[_clusterSize - cluster.Length]);
        var w = _index!;
        w.WriteStartObject();
        w.WriteNumber("offset-in-data-file", at);
        w.WriteNumber("length", _clusterSize);
        w.WriteNumber("host-offset", hostOffset);
        w.WriteString("kind", kind);
        if (l2Table is { } table) w.WriteNumber("l2-table-host-offset", table);
        if (l2Index is { } index) w.WriteNumber("l2-index", index);
        if (candidateSlots is not null)
        {
            w.WriteStartArray("candidate-l1-slots");
            foreach (long s in candidateSlots.Take(MaxListedCandidates)) w.WriteNumberValue(s);
            w.WriteEndArray();
        }
        w.WriteNumber("candidate-count", candidateCount);
        w.WriteStartArray("candidate-guest-offsets");
        foreach (long g in candidateGuestOffsets.Take(MaxListedCandidates)) w.WriteNumberValue(g);
        w.WriteEndArray();
        w.WriteString("note", note);
        w.WriteEndObject();
        Clusters++;
    }

    private void EnsureCreated()
    {
        if (_data is not null) return;
        Directory.CreateDirectory(_folder);
        _data = new FileStream(Path.Combine(_folder, DataFileName), FileMode.CreateNew, FileAccess.Write);
        _indexStream = new FileStream(Path.Combine(_folder, IndexFileName), FileMode.CreateNew, FileAccess.Write);
        _index = new Utf8JsonWriter(_indexStream, new JsonWriterOptions { Indented = true });
        _index.WriteStartObject();
        _index.WriteString("image", Path.GetFullPath(_imagePath));
        _index.WriteNumber("cluster-size", _clusterSize);
        _index.WriteString("data-file", DataFileName);
        _index.WriteStartArray("entries");
    }

    /// <summary>Closes the index and makes both files durable.</summary>
    public void Complete()
    {
        if (_data is null) return;
        _index!.WriteEndArray();
        _index.WriteNumber("entry-count", Clusters);
        _index.WriteEndObject();
        _index.Flush();
        _indexStream!.Flush(flushToDisk: true);
        _data.Flush(flushToDisk: true);
    }

    public void Dispose()
    {
        _index?.Dispose();
        _indexStream?.Dispose();
        _data?.Dispose();
    }
}
