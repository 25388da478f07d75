using NbdQcow.Image.Raw;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>Raw images: no metadata, so consistency is "it opens and reads"; durability is what the oracle checks.</summary>
public sealed class RawCrashImageFormat : ICrashImageFormat
{
    public string Name => "raw";

    public void Create(string path, long virtualSize) => RawImageCreator.Create(path, virtualSize);

    public ConsistencyReport CheckConsistency(string path, long virtualSize)
    {
        if (!File.Exists(path)) return new ConsistencyReport($"{path}: the image file is gone");
        var length = new FileInfo(path).Length;
        return new ConsistencyReport(length == virtualSize ? null : $"{path}: size {length} after the crash, expected {virtualSize}");
    }
}
