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

    private BackingChain(HashSet<string> members, int depth)
    {
        _members = members;
        Depth = depth;
    }

    /// <summary>A chain whose top image is being opened now.</summary>
    public static BackingChain Start() => new(new HashSet<string>(StringComparer.Ordinal), 0);

    /// <summary>0 for the served image, 1 for its backing file, and so on.</summary>
    public int Depth { get; }

    /// <summary>The chain one level down, for the backing file of the image at this level.</summary>
    public BackingChain Next() => new(_members, Depth + 1);

    /// <summary>False when <paramref name="canonicalPath"/> is in the chain already (the chain loops).</summary>
    public bool TryAdd(string canonicalPath) => _members.Add(canonicalPath);
}
