namespace NbdQcow.Image;

/// <summary>
/// The images opened so far down one backing chain: a format that can name a backing file opens it through
/// <see cref="ImageFormat.OpenBacking"/> with this, so a loop or a chain deeper than the limit is refused
/// whatever formats the chain mixes.
/// </summary>
public sealed class BackingChain
{
    /// <summary>Longest backing chain accepted (qemu has no hard limit; a loop or a crafted chain must not exhaust us).</summary>
    public const int MaxDepth = 32;

    private readonly HashSet<string> _members;

    private BackingChain(HashSet<string> members, int depth, string? namedPath)
    {
        _members = members;
        Depth = depth;
        NamedPath = namedPath;
    }

    /// <summary>A chain whose top image is being opened now.</summary>
    public static BackingChain Start() => new(new HashSet<string>(StringComparer.Ordinal), 0, null);

    /// <summary>0 for the served image, 1 for its backing file, and so on.</summary>
    public int Depth { get; }

    /// <summary>
    /// The path the image one level up names this image by (null for the top image). The file opened is the checked
    /// canonical path, but names inside this image resolve from this one's folder, as qemu resolves them: through a
    /// symlinked backing file, relative names stay in the symlink's folder.
    /// </summary>
    public string? NamedPath { get; }

    /// <summary>The chain one level down, for the backing file of the image at this level, named <paramref name="namedPath"/>.</summary>
    public BackingChain Next(string namedPath) => new(_members, Depth + 1, namedPath);

    /// <summary>False when <paramref name="canonicalPath"/> is in the chain already (the chain loops).</summary>
    public bool TryAdd(string canonicalPath) => _members.Add(canonicalPath);
}
