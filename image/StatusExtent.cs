namespace NbdQcow.Image;

/// <summary>One run of bytes with the same value in a qemu meta context (allocation depth, or dirty = 1 / clean = 0).</summary>
public readonly record struct StatusExtent(long Length, uint Value);
