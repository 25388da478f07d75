namespace NbdQcow.Image.Bochs;

/// <summary>Bochs "growing" redolog images, read-only (as qemu serves them); recognised by their magic text.</summary>
internal sealed class BochsFormat : ImageFormat
{
    public override string Name => "bochs";

    public override ImageFormatFeatures Features => ImageFormatFeatures.None;

    public override int ProbeLength => BochsImage.MagicText.Length + 1;

    public override bool Probe(ReadOnlySpan<byte> head) => BochsImage.HasMagic(head);

    public override IBlockDevice Open(string path, ImageOpenOptions options) => BochsImage.Open(path, options);
}
