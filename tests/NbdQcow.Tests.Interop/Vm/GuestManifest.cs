namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// The sha256 of every file the guest left on its filesystem, as it printed them on the serial console
/// ("MANIFEST: HASH  ./path" lines, sha256sum format). Paths are relative to the filesystem root, without "./".
/// </summary>
public sealed class GuestManifest
{
    /// <summary>The prefix of the final manifest's lines.</summary>
    public const string Prefix = "MANIFEST: ";

    private GuestManifest(IReadOnlyDictionary<string, string> hashByPath) => HashByPath = hashByPath;

    public IReadOnlyDictionary<string, string> HashByPath { get; }

    /// <summary>The manifest printed on lines starting with <paramref name="prefix"/> (the final one by default).</summary>
    public static GuestManifest Parse(IEnumerable<string> serialLines, string prefix = Prefix)
    {
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in serialLines)
        {
            if (!line.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var entry = line[prefix.Length..];
            var separator = entry.IndexOf("  ", StringComparison.Ordinal);
            if (separator != 64 || !entry[separator..].StartsWith("  ./", StringComparison.Ordinal))
            {
                throw new FormatException($"malformed manifest line from the guest: {line}");
            }

            hashes[entry[(separator + 4)..]] = entry[..separator];
        }

        return new GuestManifest(hashes);
    }
}
