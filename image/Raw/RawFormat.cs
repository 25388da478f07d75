namespace NbdQcow.Image.Raw;

/// <summary>Raw: the file is the disk. It has no magic, so it is what a file is when no other format claims it.</summary>
internal sealed class RawFormat : ImageFormat
{
    public override string Name => "raw";

    /// <summary>qemu records a raw backing file as "file" too.</summary>
    public override IReadOnlyList<string> Aliases => ["file"];

    /// <summary>What raw images are usually named (serve --create also makes raw of any name no other format claims).</summary>
    public override string? CreateExtension => ".img";

    public override ImageFormatFeatures Features => ImageFormatFeatures.Writable | ImageFormatFeatures.Create;

    public override string NoJournalReason => "a raw image has no metadata to journal (every write goes straight to its place)";

    public override IBlockDevice Open(string path, ImageOpenOptions options) => RawImage.Open(path, options);

    public override void Create(string path, long size) => RawImageCreator.Create(path, size);
}
