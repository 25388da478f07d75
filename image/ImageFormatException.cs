namespace NbdQcow.Image;

/// <summary>
/// An image whose on-disk metadata is invalid, damaged or unsupported by its format. Every format's own
/// exception derives from it, so the server and the tools report any format's damage the same way: one line,
/// no stack trace.
/// </summary>
public abstract class ImageFormatException(string message) : Exception(message);
