using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

/// <summary>
/// A run of guest bytes starting at a guest offset that share one storage kind. For <see cref="Qcow2ClusterKind.Normal"/>
/// the host bytes are contiguous from <see cref="HostOffset"/>; for a compressed cluster the run lies in one cluster and
/// <see cref="Entry"/> holds its descriptor.
/// </summary>
internal readonly record struct Qcow2Mapping(Qcow2ClusterKind Kind, long HostOffset, long Length, L2Entry Entry);
