using NbdQcow.Cache;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Raw;

namespace NbdQcow.Image;

/// <summary>Opens an image file as a block device, choosing the format node by probing the header.</summary>
public static class ImageOpener
{
    /// <summary>First bytes of a qcow2 file: "QFI\xfb".</summary>
    private static ReadOnlySpan<byte> Qcow2Magic => [(byte)'Q', (byte)'F', (byte)'I', 0xfb];

    public static IBlockDevice Open(string path, ImageOpenOptions options)
    {
        var format = options.Format ?? ProbeFormat(path);
        return format switch
        {
            "raw" when options.Journal && !options.ReadOnly => throw new ArgumentException(
                $"{path}: --journal is for qcow2 images only: a raw image has no metadata to journal (every write goes straight to its place)", nameof(options)),
            "raw" => RawImage.Open(path, options),
            "qcow2" => OpenQcow2(path, options),
            _ => throw new ArgumentException($"unknown image format '{format}' (allowed: raw, qcow2)", nameof(options)),
        };
    }

    /// <summary>"qcow2" when the file starts with the qcow2 magic, else "raw".</summary>
    public static string ProbeFormat(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
        var read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        return read == head.Length && head.SequenceEqual(Qcow2Magic) ? "qcow2" : "raw";
    }

    private static IBlockDevice OpenQcow2(string path, ImageOpenOptions options) =>
        Qcow2Image.Open(path, options, options.HostFileFactory ?? HostFile.Open);
}
