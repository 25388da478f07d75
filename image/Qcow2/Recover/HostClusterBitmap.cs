namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>One bit per host cluster of the damaged file (1 TiB of 64 KiB clusters is 2 MiB of memory).</summary>
internal sealed class HostClusterBitmap
{
    private readonly ulong[] _bits;

    public HostClusterBitmap(long clusters)
    {
        Count = clusters;
        _bits = new ulong[(clusters + 63) / 64];
    }

    public long Count { get; }

    public bool Get(long cluster) => cluster >= 0 && cluster < Count && (_bits[cluster >> 6] & (1UL << (int)(cluster & 63))) != 0;

    /// <summary>Sets the bit; returns whether it was already set. Clusters outside the file are ignored.</summary>
    public bool Set(long cluster)
    {
        if (cluster < 0 || cluster >= Count) return false;
        ref ulong word = ref _bits[cluster >> 6];
        ulong bit = 1UL << (int)(cluster & 63);
        bool was = (word & bit) != 0;
        word |= bit;
        return was;
    }

    public void Clear(long cluster)
    {
        if (cluster < 0 || cluster >= Count) return;
        _bits[cluster >> 6] &= ~(1UL << (int)(cluster & 63));
    }
}
