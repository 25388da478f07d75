using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// LUKS-encrypted qcow2 with real qemu on both sides: images qemu-img made (several cipher modes) served by
/// nbdqcow read as qemu decrypts them; images nbdqcow made and wrote (every cache mode) open in qemu with the
/// secret, read back the same and check clean; a wrong, missing or unsupported key is one line and exit 1.
/// </summary>
public sealed class Qcow2EncryptedImageTests
{
    private const string Secret = "correct horse";

    private static string[] QemuOpts(string image) =>
        ["--object", $"secret,id=sec0,data={Secret}", "--image-opts", $"driver=qcow2,file.filename={image},encrypt.key-secret=sec0"];

    private static async Task<string> KeyFileAsync(TempDirectory folder, string secret = Secret)
    {
        var path = folder.File("key");
        await File.WriteAllTextAsync(path, secret);
        return path;
    }

    /// <summary>qemu-img times its PBKDF2 calibration and can fail on a busy machine: a few bounded tries.</summary>
    private static async Task CreateWithQemuAsync(string image, string size, string encryptOptions)
    {
        ToolResult? last = null;
        for (int attempt = 0; attempt < 6; attempt++)
        {
            last = await ToolRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", "--object", $"secret,id=sec0,data={Secret}",
                "-o", $"encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50{encryptOptions}", image, size]);
            if (last.Succeeded) return;
            File.Delete(image);
            await Task.Delay(1000);
        }
        last!.EnsureSuccess();
    }

    private static async Task QemuIoAsync(string image, params string[] commands)
    {
        var args = new List<string>(QemuOpts(image));
        foreach (var c in commands) args.AddRange(["-c", c]);
        var result = (await ToolRunner.RunAsync("qemu-io", args)).EnsureSuccess();
        Assert.DoesNotContain("Pattern verification failed", result.Stdout + result.Stderr);
        Assert.Equal(commands.Count(c => c.StartsWith("read", StringComparison.Ordinal)),
            result.Stdout.Split('\n').Count(line => line.StartsWith("read ", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("")] // qemu's default: aes-256-xts-plain64, sha256
    [InlineData(",encrypt.cipher-alg=aes-128")]
    [InlineData(",encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256")]
    [InlineData(",encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64,encrypt.hash-alg=sha1")]
    [InlineData(",encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain,encrypt.cipher-alg=aes-128")]
    public async Task AnImageQemuImgEncryptedReadsThroughNbdqcowAsQemuDecryptsIt(string encryptOptions)
    {
        using var folder = new TempDirectory("luks-read");
        var image = folder.File("enc.qcow2");
        await CreateWithQemuAsync(image, "8M", encryptOptions);
        await QemuIoAsync(image, "write -P 0x61 0 200k", "write -P 0x62 3M 4k", "write -P 0x63 5000001 3333", "write -z 6M 64k");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ReadOnly = true,
            ExtraArguments = ["--key-file", await KeyFileAsync(folder)],
        });
        // qemu-img compare takes one format for both sides: the NBD export goes in as image-opts too.
        var compare = await ToolRunner.RunAsync("qemu-img", ["compare", "--object", $"secret,id=sec0,data={Secret}", "--image-opts",
            $"driver=raw,file.driver=nbd,file.path={server.SocketPath}", $"driver=qcow2,file.filename={image},encrypt.key-secret=sec0"]);
        Assert.True(compare.ExitCode == 0, compare.Describe("qemu-img compare") + server.Describe());
        await server.StopAndAssertCleanExitAsync();
    }

    [Theory]
    [InlineData("writeback")]
    [InlineData("writethrough")]
    [InlineData("none")]
    [InlineData("directsync")]
    [InlineData("unsafe")]
    public async Task AnImageNbdqcowCreatesAndWritesOpensInQemuWithTheSecretAndChecksClean(string cacheMode)
    {
        using var folder = new TempDirectory("luks-write");
        var image = folder.File("enc.qcow2");
        var key = await KeyFileAsync(folder);
        await ServerProcess.EnsureLauncherBuiltAsync();
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["create", image, "16M", "--encrypt", "--key-file", key, "--iter-time", "20"]))
            .EnsureSuccess();
        string[] writes = ["write -P 0x71 0 100k", "write -P 0x72 513 1000", "write -P 0x73 4M 1M", "write -P 0x74 8388000 700", "write -z 4M 64k"];
        string[] reads = ["read -P 0x71 0 513", "read -P 0x72 513 1000", "read -P 0x71 1513 100887", "read -P 0 100k 3996k",
            "read -P 0 4M 64k", "read -P 0x73 4160k 960k", "read -P 0x74 8388000 700", "read -P 0 8388700 8388516"];
        await using (var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            CacheMode = cacheMode,
            ExtraArguments = ["--key-file", key],
        }))
        {
            var args = new List<string> { "-f", "raw", server.Uri() };
            foreach (var c in writes.Concat(reads)) args.AddRange(["-c", c]);
            var io = (await ToolRunner.RunAsync("qemu-io", args)).EnsureSuccess(server.Describe());
            Assert.DoesNotContain("Pattern verification failed", io.Stdout);
            await server.StopAndAssertCleanExitAsync();
        }
        (await ToolRunner.RunAsync("qemu-img", ["check", .. QemuOpts(image)])).EnsureSuccess();
        await QemuIoAsync(image, reads);
    }

    [Fact]
    public async Task WrongMissingAndUnsupportedKeysAreOneLineNamingTheImageAndExitOne()
    {
        using var folder = new TempDirectory("luks-refuse");
        var image = folder.File("enc.qcow2");
        await CreateWithQemuAsync(image, "1M", "");
        var twofish = folder.File("twofish.qcow2");
        await CreateWithQemuAsync(twofish, "1M", ",encrypt.cipher-alg=twofish-256");
        await ServerProcess.EnsureLauncherBuiltAsync();
        var socket = folder.File("s.sock");

        var wrong = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", socket, "--key-file", await KeyFileAsync(folder, "incorrect")]);
        Assert.Equal(1, wrong.ExitCode);
        Assert.Equal($"nbdqcow serve: {image}: wrong key: it opens none of the 1 active LUKS keyslot(s)", wrong.Stderr.Trim());

        var missing = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", socket]);
        Assert.Equal(1, missing.ExitCode);
        Assert.Single(missing.Stderr.Trim().Split('\n'));
        Assert.StartsWith($"nbdqcow serve: {image}: the image is encrypted (LUKS aes-xts-plain64); give its key with --key-file FILE", missing.Stderr);

        var unsupported = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", twofish, "--socket", socket, "--key-file", await KeyFileAsync(folder)]);
        Assert.Equal(1, unsupported.ExitCode);
        Assert.Single(unsupported.Stderr.Trim().Split('\n'));
        Assert.Contains($"{twofish}: ", unsupported.Stderr);
        Assert.Contains("\"twofish-xts-plain64\" is not supported", unsupported.Stderr);

        // The key may come from the environment instead of a file.
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ReadOnly = true,
            Environment = new Dictionary<string, string> { ["NBDQCOW_KEY"] = Secret },
        });
        await server.StopAndAssertCleanExitAsync();
    }
}
