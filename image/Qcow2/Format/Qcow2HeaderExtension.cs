namespace NbdQcow.Image.Qcow2.Format;

/// <summary>A header extension kept byte for byte (types this implementation does not interpret).</summary>
public sealed record Qcow2HeaderExtension(uint Type, byte[] Data);
