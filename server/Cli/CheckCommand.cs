using System.CommandLine;
using System.Text;
using System.Text.Json;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2.Check;

namespace NbdQcow.Server.Cli;

/// <summary>
/// `nbdqcow check IMAGE [--repair leaks|all] [--json]`. Exit codes as qemu-img check: 0 clean, 1 the check could
/// not be completed, 2 corruptions, 3 leaks only.
/// </summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "qcow2 image to check." };
        var repair = new Option<string?>("--repair") { Description = "Repair: 'leaks' lowers leaked refcounts; 'all' also rebuilds refcounts and COPIED flags." };
        repair.AcceptOnlyFromAmong("leaks", "all");
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var forceShare = new Option<bool>("--force-share", "-U")
        {
            Description = "Check (without --repair) even while a writer has the image, as qemu-img check -U; findings may then be " +
                          "a moment's state of an image changing underneath.",
        };
        var noLock = new Option<bool>("--no-lock")
        {
            Description = "Take no image locks, even for --repair; only when you know nothing else uses the image.",
        };
        var command = new Command("check", "Check a qcow2 image's consistency (refcounts, mappings, COPIED flags); leaks are counted apart from corruptions.")
        {
            image, repair, json, forceShare, noLock,
        };
        command.SetAction(parseResult =>
        {
            string path = parseResult.GetValue(image)!;
            try
            {
                if (!File.Exists(path))
                {
                    Console.Error.WriteLine($"nbdqcow check: {path}: {(Directory.Exists(path) ? "Is a directory" : "No such file or directory")}");
                    return 1;
                }
                if (ImageFormats.Probe(path) is var format && !format.Has(ImageFormatFeatures.Qcow2Tools))
                {
                    Console.Error.WriteLine($"nbdqcow check: {path}: not a qcow2 image ({format.Name} images have nothing to check)");
                    return 1;
                }
                var mode = parseResult.GetValue(repair) switch
                {
                    "leaks" => Qcow2RepairMode.Leaks,
                    "all" => Qcow2RepairMode.All,
                    _ => Qcow2RepairMode.None,
                };
                if (parseResult.GetValue(forceShare) && (mode != Qcow2RepairMode.None || parseResult.GetValue(noLock)))
                {
                    Console.Error.WriteLine($"nbdqcow check: --force-share is for a check without --repair (a repair writes the image) and excludes --no-lock");
                    return 1;
                }
                var locking = parseResult.GetValue(noLock) ? ImageLocking.Off
                    : parseResult.GetValue(forceShare) ? ImageLocking.ForceShare : ImageLocking.On;
                // Held around the whole check: a repair locks as a writer, a check as a reader (as qemu-img check).
                using var imageLock = ImageLock.Acquire(path, locking, readOnly: mode == Qcow2RepairMode.None);
                var result = Qcow2Checker.Check(path, mode);
                Console.Out.Write(parseResult.GetValue(json) ? ToJson(path, result) : ToText(result));
                return ExitCode(result);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine(e is ImageLockConflictException ? $"nbdqcow check: {e.Message}" : $"nbdqcow check: {FileErrorText.Describe(path, e)}");
                return 1;
            }
        });
        return command;
    }

    internal static int ExitCode(Qcow2CheckResult result) =>
        result.FatalError is not null ? 1 : result.Corruptions > 0 ? 2 : result.Leaks > 0 ? 3 : 0;

    internal static string ToText(Qcow2CheckResult result)
    {
        var text = new StringBuilder();
        if (result.JournalNote is not null) text.AppendLine(result.JournalNote);
        if (result.FatalError is not null)
        {
            text.AppendLine($"ERROR: the check could not be completed: {result.FatalError}");
            return text.ToString();
        }
        foreach (var message in result.CorruptionMessages) text.AppendLine($"ERROR {message}");
        foreach (var message in result.LeakMessages) text.AppendLine(message);
        if (result.RepairedLeaks > 0 || result.RepairedCorruptions > 0)
            text.AppendLine($"The following inconsistencies were found and repaired:\n\n    {result.RepairedLeaks} leaked clusters\n    {result.RepairedCorruptions} corruptions\n");
        if (result.Corruptions > 0)
            text.AppendLine($"{result.Corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.");
        if (result.Leaks > 0)
            text.AppendLine($"{result.Leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.");
        if (result.IsClean) text.AppendLine("No errors were found on the image.");
        text.AppendLine($"{result.MappedGuestClusters}/{result.TotalGuestClusters} = {(result.TotalGuestClusters == 0 ? 0 : 100.0 * result.MappedGuestClusters / result.TotalGuestClusters):F2}% allocated");
        text.AppendLine($"Image end offset: {result.ImageEndOffset}");
        return text.ToString();
    }

    internal static string ToJson(string path, Qcow2CheckResult result)
    {
        var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("filename", Path.GetFullPath(path));
            writer.WriteString("format", "qcow2");
            if (result.FatalError is not null) writer.WriteString("fatal-error", result.FatalError);
            if (result.JournalNote is not null) writer.WriteString("journal", result.JournalNote);
            writer.WriteNumber("corruptions", result.Corruptions);
            writer.WriteNumber("leaks", result.Leaks);
            writer.WriteNumber("corruptions-fixed", result.RepairedCorruptions);
            writer.WriteNumber("leaks-fixed", result.RepairedLeaks);
            writer.WriteNumber("allocated-clusters", result.MappedGuestClusters);
            writer.WriteNumber("total-clusters", result.TotalGuestClusters);
            writer.WriteNumber("image-end-offset", result.ImageEndOffset);
            writer.WriteBoolean("clean", result.IsClean);
            writer.WriteStartArray("errors");
            foreach (var m in result.CorruptionMessages) writer.WriteStringValue(m);
            writer.WriteEndArray();
            writer.WriteStartArray("leaked");
            foreach (var m in result.LeakMessages) writer.WriteStringValue(m);
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }
}
