using System.CommandLine;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow create IMAGE SIZE [--cluster-size N] [--backing FILE]`: a new qcow2 v3 image; never overwrites.</summary>
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
        var command = new Command("create", "Create a qcow2 v3 image.") { image, size, clusterSize, backing };
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
                var options = new Qcow2CreateOptions
                {
                    Size = sizeText is null ? null : Qcow2Creator.ParseSize(sizeText),
                    ClusterSize = parseResult.GetValue(clusterSize) is { } c ? checked((int)Qcow2Creator.ParseSize(c)) : 65536,
                    BackingFile = backingFile,
                };
                Qcow2Creator.Create(path, options);
                Console.Out.WriteLine($"Created {path}: qcow2 v3, {options.Size?.ToString() ?? "backing file's"} bytes, {options.ClusterSize}-byte clusters"
                    + (backingFile is null ? "" : $", backing file {backingFile}"));
                return 0;
            }
            catch (Exception e) when (e is FormatException or ArgumentException or IOException or UnauthorizedAccessException or OverflowException or Qcow2FormatException)
            {
                Console.Error.WriteLine($"nbdqcow create: {path}: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
