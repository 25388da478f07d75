namespace NbdQcow.Image.Qcow2.Format;

/// <summary>The compression_type header byte (offset 104).</summary>
public enum Qcow2CompressionType : byte
{
    /// <summary>Raw deflate (zlib without header, window bits 12).</summary>
    Zlib = 0,
    Zstd = 1,
}
