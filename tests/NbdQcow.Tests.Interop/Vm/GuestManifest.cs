namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// The sha256 of every file the guest left on its filesystem, as it printed them on the serial console
/// ("MANIFEST: HASH  ./path" lines, sha256sum format). Paths are relative to the filesystem root, without "./".
/// </summary>
public sealed class GuestManifest
{
    private const string Prefix = "MANIFEST: ";

    private GuestManifest(IReadOnlyDictionary<string, string> hashByPath) => HashByPath = hashByPath;

    public IReadOnlyDictionary<string, string> HashByPath { get; }

    public static GuestManifest Parse(IEnumerable<string> serialLines)
    {
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in serialLines)
        {
            if (!line.StartsWith(Prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var entry = line[Prefix.Length..];
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
