using NbdQcow.HostIo;

namespace NbdQcow.Image.Qcow2;

/// <summary>qcow2, recognised by its magic "QFI\xfb".</summary>
internal sealed class Qcow2Format : ImageFormat
{
    public override string Name => "qcow2";

    public override string? CreateExtension => ".qcow2";

    public override ImageFormatFeatures Features => ImageFormatFeatures.Writable | ImageFormatFeatures.Create | ImageFormatFeatures.Journal
        | ImageFormatFeatures.AlwaysFastZero | ImageFormatFeatures.Qcow2Tools;

    public override int ProbeLength => 4;

    public override bool Probe(ReadOnlySpan<byte> head) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head) == Format.Qcow2Header.Magic;

    public override IBlockDevice Open(string path, ImageOpenOptions options) =>
        Qcow2Image.Open(path, options, options.HostFileFactory ?? HostFile.Open);

    public override IBlockDevice OpenBacking(string path, ImageOpenOptions options, BackingChain chain) =>
        Qcow2Image.OpenBacking(path, options, chain);

    public override void Create(string path, long size) => Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = size });
}
