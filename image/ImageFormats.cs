using NbdQcow.HostIo;
using NbdQcow.Image.Bochs;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Raw;

namespace NbdQcow.Image;

/// <summary>
/// The image-format registry (qemu's BlockDriver table): every place that chooses, checks, opens or creates a
/// format asks it. Probing tries the formats with magic in registration order; a file none claims is raw.
/// </summary>
public static class ImageFormats
{
    public static readonly ImageFormat Raw = new RawFormat();
    public static readonly ImageFormat Qcow2 = new Qcow2Format();

    private static readonly List<ImageFormat> Registered =
    [
        Raw,
        Qcow2,
        new BochsFormat(),
    ];

    private static readonly Lock Gate = new();

    /// <summary>The registered formats, in registration order.</summary>
    public static IReadOnlyList<ImageFormat> All
    {
        get
        {
            lock (Gate) return [.. Registered];
        }
    }

    /// <summary>The names users may type, in registration order ("raw, qcow2, ..." in messages).</summary>
    public static IReadOnlyList<string> Names => [.. All.Select(f => f.Name)];

    /// <summary>Adds a format (a library user's, or a test's); a name already registered is refused.</summary>
    public static void Register(ImageFormat format)
    {
        lock (Gate)
        {
            if (Registered.Exists(f => Matches(f, format.Name)))
                throw new ArgumentException($"image format '{format.Name}' is registered already", nameof(format));
            Registered.Add(format);
        }
    }

    /// <summary>The format of that name or alias (case-insensitive), or null.</summary>
    public static ImageFormat? Find(string name)
    {
        lock (Gate) return Registered.Find(f => Matches(f, name));
    }

    /// <summary>The format of that name; an unknown name is an <see cref="ArgumentException"/> listing the known ones.</summary>
    public static ImageFormat Get(string name) =>
        Find(name) ?? throw new ArgumentException($"unknown image format '{name}' (allowed: {string.Join(", ", Names)})", nameof(name));

    /// <summary>The format whose magic starts the file, else raw.</summary>
    public static ImageFormat Probe(string path)
    {
        // Through HostFile, which refuses a FIFO or a folder with one line instead of blocking on it; bytes past the
        // end read as zeroes, which no format's magic is.
        var head = new byte[MaxProbeLength];
        using (var file = HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false)))
            file.Read(0, head);
        return ProbeMagic(head) ?? Raw;
    }

    /// <summary>Bytes at the start of a file that probing reads.</summary>
    public static int MaxProbeLength => All.Max(f => f.ProbeLength);

    /// <summary>The format whose magic starts <paramref name="head"/>, or null when none claims it (raw is never guessed here).</summary>
    public static ImageFormat? ProbeMagic(ReadOnlySpan<byte> head)
    {
        foreach (var format in All)
        {
            if (format.ProbeLength > 0 && format.ProbeLength <= head.Length && format.Probe(head[..format.ProbeLength]))
                return format;
        }
        return null;
    }

    /// <summary>The format serve --create makes for <paramref name="path"/>: the one whose extension it has, else raw.</summary>
    public static ImageFormat ForNewFile(string path)
    {
        foreach (var format in All)
        {
            if (format.CreateExtension is { } extension && format.Has(ImageFormatFeatures.Create)
                && path.EndsWith(extension, StringComparison.OrdinalIgnoreCase))
                return format;
        }
        return Raw;
    }

    private static bool Matches(ImageFormat format, string name) =>
        format.Name.Equals(name, StringComparison.OrdinalIgnoreCase)
        || format.Aliases.Any(alias => alias.Equals(name, StringComparison.OrdinalIgnoreCase));
}
