namespace NbdQcow.Image.Qcow2.Format;

/// <summary>How one guest (sub)cluster is stored (qemu's QCow2SubclusterType).</summary>
public enum Qcow2ClusterKind
{
    /// <summary>No host cluster: read from the backing file, else zero.</summary>
    Unallocated,
    /// <summary>Extended L2: the cluster has a host cluster but this subcluster is not allocated (reads from backing).</summary>
    UnallocatedWithHostCluster,
    /// <summary>Reads as zero; no host cluster.</summary>
    Zero,
    /// <summary>Reads as zero; a host cluster stays allocated (preallocated zero).</summary>
    ZeroWithHostCluster,
    /// <summary>Data at the host offset.</summary>
    Normal,
    Compressed,
    /// <summary>A combination of bits the spec forbids (e.g. allocated and zero at once).</summary>
    Invalid,
}
