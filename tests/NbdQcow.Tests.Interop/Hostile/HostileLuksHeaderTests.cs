using System.Buffers.Binary;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Hostile;

/// <summary>
/// A LUKS header whose PBKDF2 iteration counts are patched to 2^31 − 1 (keyslot or volume-key digest): opening it
/// with the right key would run PBKDF2 for hours. serve and recover refuse it at once with one line naming the
/// field, and an image whose counts qemu-img calibrated still opens.
/// </summary>
public sealed class HostileLuksHeaderTests
{
    private const string Secret = "correct horse";
    private const int KeyslotZeroIterationsOffset = 208 + 4;
    private const int DigestIterationsOffset = 164;
    private static readonly byte[] LuksMagic = [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xba, 0xbe];
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static async Task CreateWithQemuAsync(string image)
    {
        ToolResult? last = null;
        for (int attempt = 0; attempt < 6; attempt++)
        {
            last = await ToolRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", "--object", $"secret,id=sec0,data={Secret}",
                "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50", image, "1M"]);
            if (last.Succeeded) return;
            File.Delete(image);
            await Task.Delay(1000);
        }
        last!.EnsureSuccess();
    }

    /// <summary>Overwrites a big-endian u32 of the LUKS header inside the qcow2 file (found by its magic).</summary>
    private static void PatchLuksField(string image, int fieldOffset, uint value)
    {
        var bytes = File.ReadAllBytes(image);
        int luks = bytes.AsSpan().IndexOf(LuksMagic);
        Assert.True(luks > 0, "no LUKS header in the image qemu-img made");
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(luks + fieldOffset), value);
        File.WriteAllBytes(image, bytes);
    }

    [Theory]
    [InlineData(KeyslotZeroIterationsOffset, "LUKS keyslot 0 iterations: 2147483647 iterations")]
    [InlineData(DigestIterationsOffset, "LUKS master key digest iterations: 2147483647 iterations")]
    public async Task IterationCountsThatWouldStallTheOpenAreRefusedAtOnce(int fieldOffset, string expected)
    {
        using var folder = new TempDirectory("luks-iterations");
        var image = folder.File("enc.qcow2");
        await CreateWithQemuAsync(image);
        var key = folder.File("key");
        await File.WriteAllTextAsync(key, Secret);
        await ServerProcess.EnsureLauncherBuiltAsync();
        var socket = folder.File("s.sock");

        // The calibrated image opens: the bound refuses nothing qemu-img makes.
        await using (var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image, UnixSocket = true, ExtraArguments = ["--key-file", key] }))
            await server.StopAndAssertCleanExitAsync();

        PatchLuksField(image, fieldOffset, int.MaxValue);
        var serve = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", socket, "--key-file", key], Bound);
        Assert.Equal(1, serve.ExitCode);
        Assert.Single(serve.Stderr.Trim().Split('\n'));
        Assert.Contains(image, serve.Stderr);
        Assert.Contains(expected, serve.Stderr);

        var recover = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["recover", image, "--output", folder.File("out.qcow2"), "--key-file", key], Bound);
        Assert.NotEqual(0, recover.ExitCode);
        Assert.Contains(expected, recover.Stderr);
    }
}
