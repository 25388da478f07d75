using System.CommandLine;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow create IMAGE SIZE [--format raw|qcow2] [--cluster-size N] [--backing FILE]`: a new image; never overwrites.</summary>
internal static class CreateCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "Path of the new qcow2 image (must not exist)." };
        var size = new Argument<string?>("SIZE")
        {
            Description = "Virtual size: bytes or with a binary suffix (512M, 10G, 1T). May be left out with --backing (takes its size).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var clusterSize = new Option<string?>("--cluster-size") { Description = "Cluster size, 512 to 2M (default 64K)." };
        var backing = new Option<string?>("--backing") { Description = "Backing file (qcow2 or raw, recorded with its format); relative to the image's folder." };
        var format = new Option<string?>("--format", "-f")
        {
            HelpName = "raw|qcow2",
            Description = "Image format (default: qcow2 for *.qcow2 or with --backing, raw for other names, as serve --create).",
        };
        var command = new Command("create", "Create a qcow2 v3 image or a sparse raw file.") { image, size, clusterSize, backing, format };
        command.SetAction(parseResult =>
        {
            string path = parseResult.GetValue(image)!;
            try
            {
                if (File.Exists(path) || Directory.Exists(path))
                {
                    Console.Error.WriteLine($"nbdqcow create: {path} already exists; refusing to overwrite it");
                    return 1;
                }
                string? sizeText = parseResult.GetValue(size);
                string? backingFile = parseResult.GetValue(backing);
                if (sizeText is null && backingFile is null)
                {
                    Console.Error.WriteLine("nbdqcow create: SIZE is required (for example 10G) unless --backing is given");
                    return 2;
                }
                var formatName = parseResult.GetValue(format)?.ToLowerInvariant();
                var creatable = ImageFormats.All.Where(f => f.Has(ImageFormatFeatures.Create)).Select(f => f.Name).ToList();
                if (formatName is not null && !creatable.Contains(formatName))
                {
                    Console.Error.WriteLine($"nbdqcow create: --format {formatName}: allowed: {string.Join(", ", creatable)}");
                    Console.Error.WriteLine("Try 'nbdqcow create --help' for more information.");
                    return 2;
                }
                var chosen = formatName is not null ? ImageFormats.Get(formatName)
                    : backingFile is not null ? ImageFormats.Qcow2 : ImageFormats.ForNewFile(path);
                if (chosen != ImageFormats.Qcow2)
                {
                    // Backing files and cluster sizes are qcow2's; any other format is created from a size alone.
                    if (backingFile is not null || parseResult.GetValue(clusterSize) is not null)
                    {
                        Console.Error.WriteLine($"nbdqcow create: --backing and --cluster-size are for qcow2 images; a {chosen.Name} image has neither");
                        Console.Error.WriteLine("Try 'nbdqcow create --help' for more information.");
                        return 2;
                    }
                    var plainSize = Qcow2Creator.ParseSize(sizeText!);
                    chosen.Create(path, plainSize);
                    Console.Out.WriteLine($"Created {path}: {chosen.Name}, {plainSize} bytes{(chosen == ImageFormats.Raw ? " (sparse)" : "")}");
                    return 0;
                }
                var options = new Qcow2CreateOptions
                {
                    Size = sizeText is null ? null : Qcow2Creator.ParseSize(sizeText),
                    ClusterSize = parseResult.GetValue(clusterSize) is { } c ? checked((int)Qcow2Creator.ParseSize(c)) : 65536,
                    BackingFile = backingFile,
                };
                Qcow2Creator.Create(path, options);
                // With --backing and no SIZE the size is the backing file's: read it back rather than guess.
                var createdSize = options.Size ?? ReadVirtualSize(path);
                Console.Out.WriteLine($"Created {path}: qcow2 v3, {createdSize} bytes, {options.ClusterSize}-byte clusters"
                    + (backingFile is null ? "" : $", backing file {backingFile}"));
                return 0;
            }
            catch (Exception e) when (e is FormatException or ArgumentException or IOException or UnauthorizedAccessException or OverflowException or ImageFormatException)
            {
                // An argument check names its parameter; the user never typed one of that name.
                var message = e is ArgumentException { ParamName: { } parameter } ? e.Message.Replace($" (Parameter '{parameter}')", "", StringComparison.Ordinal) : e.Message;
                Console.Error.WriteLine($"nbdqcow create: {path}: {message}");
                return 1;
            }
        });
        return command;
    }

    /// <summary>The virtual size field of a qcow2 header (big-endian, at offset 24).</summary>
    private static long ReadVirtualSize(string path)
    {
        using var file = File.OpenRead(path);
        Span<byte> header = stackalloc byte[32];
        file.ReadExactly(header);
        return checked((long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(header[24..]));
    }
}
