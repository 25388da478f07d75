namespace NbdQcow.Image;

/// <summary>A failed block operation with its error class; the connection survives it.</summary>
public sealed class BlockDeviceException : IOException
{
    public BlockDeviceException(BlockError error, string message, Exception? inner = null)
        : base(message, inner) => Error = error;

    public BlockError Error { get; }
}
