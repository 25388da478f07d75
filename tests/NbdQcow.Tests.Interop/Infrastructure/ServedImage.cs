namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A test's image in its own temp folder, served by a real `./nbdqcow serve` process.
/// Disposing stops the server (SIGTERM, bounded) and removes the folder.
/// </summary>
public sealed class ServedImage : IAsyncDisposable
{
    private ServedImage(TempDirectory folder, string imagePath, ServerProcess server)
    {
        Folder = folder;
        ImagePath = imagePath;
        Server = server;
    }

    public TempDirectory Folder { get; }

    public string ImagePath { get; }

    public ServerProcess Server { get; }

    /// <summary>The default export's URI (or a named one's).</summary>
    public string Uri(string exportName = "") => Server.Uri(exportName);

    /// <summary>
    /// Creates a sparse raw image of <paramref name="size"/> bytes, lets <paramref name="prepare"/> write into it,
    /// then serves it with <paramref name="options"/> (its ImagePath is filled in).
    /// </summary>
    public static Task<ServedImage> StartRawAsync(long size, ServeOptions? options = null,
        Action<string>? prepare = null) =>
        StartAsync(path =>
        {
            RawImageFile.CreateSparse(path, size);
            prepare?.Invoke(path);
            return Task.CompletedTask;
        }, "disk.img", options);

    /// <summary>Builds the image with <paramref name="build"/> (given the path to create) and serves it.</summary>
    public static async Task<ServedImage> StartAsync(Func<string, Task> build, string fileName,
        ServeOptions? options = null)
    {
        var folder = new TempDirectory("img");
        try
        {
            var imagePath = folder.File(fileName);
            await build(imagePath);
            var server = await ServerProcess.StartAsync((options ?? new ServeOptions()) with { ImagePath = imagePath });
            return new ServedImage(folder, imagePath, server);
        }
        catch
        {
            folder.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Server.DisposeAsync();
        }
        finally
        {
            Folder.Dispose();
        }
    }
}
