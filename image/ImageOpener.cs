namespace NbdQcow.Image;

/// <summary>Opens an image file as a block device: the format named in the options, else the one the registry probes.</summary>
public static class ImageOpener
{
    public static IBlockDevice Open(string path, ImageOpenOptions options)
    {
        var format = options.Format is { } name ? ImageFormats.Get(name) : ImageFormats.Probe(path);
        if (options.Journal && !options.ReadOnly && !format.Has(ImageFormatFeatures.Journal))
            throw new ArgumentException($"{path}: --journal is for qcow2 images only: {format.NoJournalReason}", nameof(options));
        return format.Open(path, options);
    }

    /// <summary>The name of the format the registry probes for the file (qcow2 magic: "qcow2"; no magic: "raw").</summary>
    public static string ProbeFormat(string path) => ImageFormats.Probe(path).Name;
}
