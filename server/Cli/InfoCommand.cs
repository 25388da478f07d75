using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow info IMAGE [--json]`: header fields, features, backing chain, snapshots, bitmaps, allocation.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "Image file (qcow2 or raw, probed)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of text (field names as qemu-img info's where the meaning is the same)." };
        var output = new Option<string?>("--output") { HelpName = "human|json", Description = "As qemu-img: --output=json is --json." };
        var forceShare = new Option<bool>("--force-share", "-U")
        {
            Description = "Read the image even while a writer (nbdqcow serve, qemu-nbd, a VM) has it, as qemu-img's -U; " +
                          "the numbers may then be a moment old. Without it an image in use is refused, as qemu-img refuses it.",
        };
        var command = new Command("info", "Show an image's format, header fields, features, backing chain, snapshots, bitmaps and allocation.")
        {
            image, json, output, forceShare,
        };
        command.SetAction(parseResult =>
        {
            string path = parseResult.GetValue(image)!;
            try
            {
                var locking = parseResult.GetValue(forceShare) ? ImageLocking.ForceShare : ImageLocking.On;
                var outputFormat = parseResult.GetValue(output);
                if (outputFormat is not (null or "human" or "json"))
                {
                    Console.Error.WriteLine($"nbdqcow info: --output {outputFormat}: allowed: human, json");
                    Console.Error.WriteLine("Try 'nbdqcow info --help' for more information.");
                    return 2;
                }
                Console.Out.Write(Describe(path, parseResult.GetValue(json) || outputFormat == "json", locking).GetAwaiter().GetResult());
                return 0;
            }
            catch (Exception e) when (e is ImageFormatException or IOException or UnauthorizedAccessException or ArgumentException)
            {
                // A lock refusal names the image itself.
                Console.Error.WriteLine(e is ImageLockConflictException ? $"nbdqcow info: {e.Message}" : $"nbdqcow info: {FileErrorText.Describe(path, e)}");
                return 1;
            }
        });
        return command;
    }

    internal static async Task<string> Describe(string path, bool json, ImageLocking locking = ImageLocking.On)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException("no such file", path);
        string format = ImageOpener.ProbeFormat(path);
        // An operator inspecting an image sees its whole chain wherever it lies (as qemu-img info); devices and other
        // non-regular backing files are still refused.
        // An encrypted image opens without its key: info reads metadata only, never data.
        // Damage found on the way (an L2 table past the end of the file) is one warning; the rest is still described.
        var options = new ImageOpenOptions
        {
            ReadOnly = true,
            MaxDirtyAge = null,
            Locking = locking,
            BackingRoot = "/",
            OpenEncryptedWithoutKey = true,
            DamageReport = message => Console.Error.WriteLine($"nbdqcow info: warning: {message}"),
        };
        await using var device = ImageOpener.Open(path, options with { Format = format });
        var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("filename", Path.GetFullPath(path));
            writer.WriteString("format", format);
            writer.WriteNumber("virtual-size", device.Size);
            writer.WriteNumber("file-length", new FileInfo(path).Length);
            if (device is Qcow2Image qcow2)
                await WriteQcow2(writer, qcow2);
            writer.WriteEndObject();
        }
        var document = JsonDocument.Parse(stream.ToArray());
        return json ? Encoding.UTF8.GetString(stream.ToArray()) + "\n" : ToText(document.RootElement);
    }

    private static async Task WriteQcow2(Utf8JsonWriter w, Qcow2Image image)
    {
        var h = image.Header;
        w.WriteNumber("version", h.Version);
        w.WriteString("compat", h.Version == 2 ? "0.10" : "1.1");
        w.WriteNumber("cluster-size", h.ClusterSize);
        w.WriteNumber("refcount-bits", h.RefcountBits);
        w.WriteString("compression-type", h.CompressionType == Qcow2CompressionType.Zstd ? "zstd" : "zlib");
        w.WriteBoolean("extended-l2", h.HasExtendedL2);
        w.WriteBoolean("lazy-refcounts", (h.CompatibleFeatures & Qcow2CompatibleFeatures.LazyRefcounts) != 0);
        w.WriteBoolean("corrupt", (h.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0);
        w.WriteBoolean("dirty-flag", (h.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0);
        w.WriteNumber("header-length", h.HeaderLength);
        w.WriteNumber("l1-size", h.L1Size);
        w.WriteNumber("l1-table-offset", (long)h.L1TableOffset);
        w.WriteNumber("refcount-table-offset", (long)h.RefcountTableOffset);
        w.WriteNumber("refcount-table-clusters", h.RefcountTableClusters);
        w.WriteNumber("snapshots-offset", (long)h.SnapshotsOffset);
        WriteFeatures(w, "incompatible-features", h, Qcow2FeatureKind.Incompatible);
        WriteFeatures(w, "compatible-features", h, Qcow2FeatureKind.Compatible);
        WriteFeatures(w, "autoclear-features", h, Qcow2FeatureKind.Autoclear);
        if (h.ExternalDataFile is not null)
        {
            w.WriteString("data-file", h.ExternalDataFile);
            w.WriteBoolean("data-file-raw", (h.AutoclearFeatures & Qcow2AutoclearFeatures.DataFileRaw) != 0);
        }
        if (h.BackingFileName is not null)
        {
            w.WriteString("backing-filename", h.BackingFileName);
            w.WriteString("backing-filename-format", h.BackingFormat ?? "(not recorded)");
            w.WriteStartArray("backing-chain");
            for (Qcow2Image? layer = image; layer is not null; layer = layer.Backing as Qcow2Image)
            {
                WriteLayer(w, layer.Path, "qcow2", layer.Size);
                if (layer.Backing is { } backing and not Qcow2Image)
                    WriteLayer(w, layer.BackingPath!, layer.BackingFormat!, backing.Size);
            }
            w.WriteEndArray();
        }
        w.WriteStartArray("snapshots");
        foreach (var s in image.Snapshots)
        {
            w.WriteStartObject();
            w.WriteString("id", s.Id);
            w.WriteString("name", s.Name);
            w.WriteString("date", s.Date.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture));
            w.WriteNumber("vm-clock-nsec", s.VmClockNanoseconds);
            w.WriteNumber("vm-state-size", s.VmStateSize);
            if (s.VirtualSize is { } size)
                w.WriteNumber("virtual-size", size);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("bitmaps");
        foreach (var b in image.BitmapDirectory)
        {
            w.WriteStartObject();
            w.WriteString("name", b.Name);
            w.WriteNumber("granularity", b.Granularity);
            w.WriteStartArray("flags");
            if (b.InUse) w.WriteStringValue("in-use");
            if (b.Enabled) w.WriteStringValue("auto");
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (image.Encryption is { } luks)
        {
            // What the header says about the encryption; never the key (info does not ask for it).
            w.WriteStartObject("encryption");
            w.WriteString("format", "luks");
            w.WriteString("cipher", luks.CipherName);
            w.WriteString("cipher-mode", luks.CipherMode);
            w.WriteString("hash", luks.HashSpec);
            w.WriteNumber("key-bits", luks.KeyBytes * 8);
            w.WriteString("uuid", luks.Uuid);
            w.WriteNumber("master-key-iterations", luks.MasterKeyDigestIterations);
            w.WriteNumber("keyslots-active", luks.ActiveKeyslots);
            w.WriteStartArray("keyslots");
            for (int i = 0; i < luks.Keyslots.Count; i++)
            {
                var slot = luks.Keyslots[i];
                if (!slot.Active) continue;
                w.WriteStartObject();
                w.WriteNumber("slot", i);
                w.WriteNumber("iterations", slot.Iterations);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        var unknown = h.UnknownExtensions.Where(e => e.Type != Qcow2HeaderExtensionType.FullDiskEncryption).ToList();
        if (unknown.Count > 0)
        {
            w.WriteStartArray("unknown-header-extensions");
            foreach (var e in unknown)
                w.WriteStringValue($"0x{e.Type:x8} ({e.Data.Length} bytes)");
            w.WriteEndArray();
        }
        var allocation = await image.SummarizeAllocationAsync();
        w.WriteStartObject("allocation");
        w.WriteNumber("data-bytes", allocation.DataBytes);
        w.WriteNumber("compressed-bytes", allocation.CompressedBytes);
        w.WriteNumber("zero-bytes", allocation.ZeroBytes);
        w.WriteNumber("unallocated-bytes", allocation.UnallocatedBytes);
        if (allocation.DamagedBytes > 0) w.WriteNumber("damaged-bytes", allocation.DamagedBytes);
        w.WriteNumber("l2-tables", allocation.L2Tables);
        w.WriteEndObject();
    }

    private static void WriteLayer(Utf8JsonWriter w, string path, string format, long size)
    {
        w.WriteStartObject();
        w.WriteString("filename", path);
        w.WriteString("format", format);
        w.WriteNumber("virtual-size", size);
        w.WriteEndObject();
    }

    private static void WriteFeatures(Utf8JsonWriter w, string name, Qcow2Header header, Qcow2FeatureKind kind)
    {
        w.WriteStartArray(name);
        foreach (var feature in header.DescribeFeatures(kind))
            w.WriteStringValue(feature);
        w.WriteEndArray();
    }

    /// <summary>Text form: one "key: value" per line, arrays of objects as indented blocks.</summary>
    private static string ToText(JsonElement root)
    {
        var text = new StringBuilder();
        AppendObject(text, root, "");
        return text.ToString();
    }

    private static void AppendObject(StringBuilder text, JsonElement element, string indent)
    {
        foreach (var property in element.EnumerateObject())
        {
            string key = property.Name.Replace('-', ' ');
            var value = property.Value;
            switch (value.ValueKind)
            {
                case JsonValueKind.Array when value.GetArrayLength() == 0:
                    text.Append(indent).Append(key).AppendLine(": (none)");
                    break;
                case JsonValueKind.Array when value[0].ValueKind != JsonValueKind.Object:
                    text.Append(indent).Append(key).Append(": ");
                    text.AppendJoin(", ", value.EnumerateArray().Select(v => v.ToString())).AppendLine();
                    break;
                case JsonValueKind.Array:
                    text.Append(indent).Append(key).AppendLine(":");
                    int i = 0;
                    foreach (var item in value.EnumerateArray())
                    {
                        text.Append(indent).Append("  [").Append(i++).AppendLine("]");
                        AppendObject(text, item, indent + "    ");
                    }
                    break;
                case JsonValueKind.Object:
                    text.Append(indent).Append(key).AppendLine(":");
                    AppendObject(text, value, indent + "  ");
                    break;
                case JsonValueKind.Number when property.Name.EndsWith("bytes", StringComparison.Ordinal) || property.Name is "virtual-size" or "file-length" or "vm-state-size":
                    text.Append(indent).Append(key).Append(": ").Append(HumanSize(value.GetInt64())).AppendLine();
                    break;
                case JsonValueKind.True or JsonValueKind.False:
                    text.Append(indent).Append(key).Append(": ").AppendLine(value.GetBoolean() ? "yes" : "no");
                    break;
                default:
                    text.Append(indent).Append(key).Append(": ").AppendLine(value.ToString());
                    break;
            }
        }
    }

    private static string HumanSize(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return unit == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{value:0.##} {units[unit]} ({bytes} bytes)");
    }
}
