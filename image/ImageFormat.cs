namespace NbdQcow.Image;

/// <summary>
/// One image format, as the registry (<see cref="ImageFormats"/>) knows it: its name, how a file of it is
/// recognised, how it is opened (served, or as a backing file) and created, and what it can do. A new format
/// is a folder with its image and one of these, plus one line in <see cref="ImageFormats"/>.
/// </summary>
public abstract class ImageFormat
{
    /// <summary>The name users type (--format, Format, backing_fmt), lower case.</summary>
    public abstract string Name { get; }

    /// <summary>Other names accepted for it where qemu writes them (a backing_fmt of "file" is raw).</summary>
    public virtual IReadOnlyList<string> Aliases => [];

    /// <summary>The file extension that makes serve --create choose it, with its dot; null for none.</summary>
    public virtual string? CreateExtension => null;

    public abstract ImageFormatFeatures Features { get; }

    /// <summary>
    /// Bytes at the start of a file that <see cref="Probe"/> needs; 0 for a format without magic, which is
    /// never guessed (raw is what a file is when no format claims it).
    /// </summary>
    public virtual int ProbeLength => 0;

    /// <summary>True when <paramref name="head"/> (the first <see cref="ProbeLength"/> bytes) carries this format's magic.</summary>
    public virtual bool Probe(ReadOnlySpan<byte> head) => false;

    /// <summary>Opens an image to serve it (read-write unless the options or the format say otherwise).</summary>
    public abstract IBlockDevice Open(string path, ImageOpenOptions options);

    /// <summary>
    /// Opens an image read-only as the backing file of another: <paramref name="options"/> are the upper image's,
    /// read-only, with the backing root already resolved; a format that names a backing file of its own opens it
    /// through <paramref name="chain"/>'s next level.
    /// </summary>
    public virtual IBlockDevice OpenBacking(string path, ImageOpenOptions options, BackingChain chain) => Open(path, options);

    /// <summary>Creates an empty image of <paramref name="size"/> bytes; never overwrites an existing file.</summary>
    public virtual void Create(string path, long size) =>
        throw new NotSupportedException($"{path}: nbdqcow cannot create {Name} images");

    /// <summary>Why --journal is refused for a writable image of this format (when it lacks <see cref="ImageFormatFeatures.Journal"/>).</summary>
    public virtual string NoJournalReason => $"a {Name} image has no metadata to journal";

    public bool Has(ImageFormatFeatures feature) => (Features & feature) == feature;

    public override string ToString() => Name;
}
