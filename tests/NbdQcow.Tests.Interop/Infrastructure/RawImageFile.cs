namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>Creates and inspects raw image files directly on the host (the reference side of a comparison).</summary>
public static class RawImageFile
{
    /// <summary>A sparse file of <paramref name="size"/> bytes.</summary>
    public static void CreateSparse(string path, long size)
    {
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.SetLength(size);
    }

    public static void Write(string path, long offset, ReadOnlySpan<byte> data)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
        file.Position = offset;
        file.Write(data);
    }

    public static byte[] Read(string path, long offset, int length)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var data = new byte[length];
        file.Position = offset;
        file.ReadExactly(data);
        return data;
    }

    /// <summary>Bytes the file occupies on disk (st_blocks * 512), to tell sparse from allocated.</summary>
    public static async Task<long> AllocatedBytesAsync(string path)
    {
        var result = (await ToolRunner.RunAsync("stat", ["-c", "%b %B", path])).EnsureSuccess();
        var parts = result.Stdout.Trim().Split(' ');
        return long.Parse(parts[0]) * long.Parse(parts[1]);
    }
}
