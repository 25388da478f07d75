using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// A qcow2 image names its backing files, and a crafted one could name any host file. Devices, FIFOs and other
/// non-regular files are refused always; regular files only inside the backing root (by default the folder of the
/// opened image, after symlinks).
/// </summary>
public sealed class Qcow2BackingFilePolicyTests : IDisposable
{
    private readonly TempDirectory _folder = new();
    private readonly TempDirectory _elsewhere = new();

    public void Dispose()
    {
        _folder.Dispose();
        _elsewhere.Dispose();
    }

    /// <summary>img.qcow2 in the test folder, backed by <paramref name="backing"/> (raw), which need not exist.</summary>
    private string ImageBackedBy(string backing)
    {
        QemuTools.Bash(_folder.Path, $"qemu-img create -q -f qcow2 -u -b '{backing}' -F raw img.qcow2 1M");
        return _folder.File("img.qcow2");
    }

    /// <summary>A raw "secret" of 1 MiB of 0x53 in a folder that is not the image's.</summary>
    private string SecretElsewhere()
    {
        QemuTools.Bash(_elsewhere.Path, "qemu-img create -q -f raw secret.raw 1M; qemu-io -f raw secret.raw -c 'write -P 0x53 0 1M' >/dev/null");
        return _elsewhere.File("secret.raw");
    }

    private static Qcow2FormatException Refused(string path, ImageOpenOptions? options = null) =>
        Assert.Throws<Qcow2FormatException>(() =>
            Qcow2Image.Open(path, options ?? new ImageOpenOptions { ReadOnly = true }, HostFile.Open).DisposeAsync().AsTask().GetAwaiter().GetResult());

    [Theory]
    [InlineData("/dev/zero")]
    [InlineData("/proc/self/mem")]
    public void Non_regular_backing_file_is_refused_naming_it(string device)
    {
        var error = Refused(ImageBackedBy(device));
        Assert.Contains($"backing file = \"{device}\"", error.Message);
        Assert.Contains("not a regular file", error.Message);
    }

    [Fact]
    public async Task Fifo_backing_file_is_refused_without_blocking_on_open()
    {
        QemuTools.Bash(_folder.Path, "mkfifo pipe");
        string path = ImageBackedBy("pipe");
        // Opening a FIFO for reading blocks until a writer comes: a refusal must come before any open.
        var open = Task.Run(() => Refused(path));
        Assert.True(await Task.WhenAny(open, Task.Delay(TimeSpan.FromSeconds(20))) == open, "opening the image blocked on its FIFO backing file");
        Assert.Contains("not a regular file", (await open).Message);
    }

    [Theory]
    [InlineData("file:base.raw")]
    [InlineData("nbd:localhost:10809")]
    [InlineData("host_device:base.raw")]
    public void A_backing_or_data_file_name_with_a_protocol_prefix_is_refused_even_when_a_file_of_that_name_exists(string name)
    {
        // qemu reads "file:base.raw" as the file protocol and opens base.raw (from its working folder), "nbd:..." as a
        // connection: a file in the image's folder that happens to carry the whole name is another disk than qemu's.
        QemuTools.Bash(_folder.Path, $"truncate -s 1M './{name}'");
        var backing = Refused(ImageBackedBy(name));
        Assert.Contains("protocol prefix", backing.Message);
        // qemu-img strips a "file:" prefix from a data file name: write the name into the header extension instead.
        string plain = name.Replace(':', 'X');
        QemuTools.Bash(_folder.Path, $"rm -f img.qcow2; truncate -s 1M '{plain}'; " +
            $"qemu-img create -q -f qcow2 -o data_file='{plain}',data_file_raw=on img.qcow2 1M");
        byte[] image = File.ReadAllBytes(_folder.File("img.qcow2"));
        int at = image.AsSpan(0, 4096).IndexOf(System.Text.Encoding.ASCII.GetBytes(plain));
        Assert.True(at > 0, "data file name not found in the header");
        System.Text.Encoding.ASCII.GetBytes(name).CopyTo(image, at);
        File.WriteAllBytes(_folder.File("img.qcow2"), image);
        var data = Refused(_folder.File("img.qcow2"));
        Assert.Contains("protocol prefix", data.Message);
    }

    [Fact]
    public void Backing_file_outside_the_image_folder_is_refused_by_default_naming_the_setting()
    {
        string secret = SecretElsewhere();
        var error = Refused(ImageBackedBy(secret));
        Assert.Contains($"backing file = \"{secret}\"", error.Message);
        Assert.Contains("outside the backing root", error.Message);
        Assert.Contains("--backing-root", error.Message);
        Assert.Contains("BackingRoot", error.Message);
    }

    [Fact]
    public void Symlink_in_the_image_folder_to_a_file_elsewhere_is_refused()
    {
        string secret = SecretElsewhere();
        File.CreateSymbolicLink(_folder.File("base.raw"), secret);
        Assert.Contains("outside the backing root", Refused(ImageBackedBy("base.raw")).Message);
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qcow2")]
    public async Task A_backing_symlink_retargeted_between_the_check_and_the_open_cannot_reach_a_file_elsewhere(string format)
    {
        // base.<format> (0x11) in the image's folder, reached through the symlink link.<format>; a secret (0x53) elsewhere.
        QemuTools.Bash(_folder.Path, $"qemu-img create -q -f {format} base.{format} 1M; qemu-io -f {format} base.{format} -c 'write -P 0x11 0 1M' >/dev/null");
        QemuTools.Bash(_elsewhere.Path, $"qemu-img create -q -f {format} secret.{format} 1M; qemu-io -f {format} secret.{format} -c 'write -P 0x53 0 1M' >/dev/null");
        string link = _folder.File($"link.{format}");
        File.CreateSymbolicLink(link, _folder.File($"base.{format}"));
        QemuTools.Bash(_folder.Path, $"qemu-img create -q -f qcow2 -u -b link.{format} -F {format} img.qcow2 1M");

        // The image's own file is opened first; the next open is the backing file's, after its path was checked:
        // that is when the symlink is pointed elsewhere (deterministically, not a race).
        var opened = new List<string>();
        HostFileFactory retargetingOpen = (path, options) =>
        {
            if (opened.Count == 1)
            {
                File.Delete(link);
                File.CreateSymbolicLink(link, _elsewhere.File($"secret.{format}"));
            }
            opened.Add(path);
            return HostFile.Open(path, options);
        };
        await using var image = Qcow2Image.Open(_folder.File("img.qcow2"), new ImageOpenOptions { ReadOnly = true }, retargetingOpen);
        var buffer = new byte[4096];
        await image.ReadAsync(0, buffer);
        Assert.True(buffer.All(b => b == 0x11), $"read 0x{buffer[0]:x2} through the backing file: opened {string.Join(", ", opened)}");
        Assert.DoesNotContain(opened, path => path.StartsWith(_elsewhere.Path, StringComparison.Ordinal) || path == link);
    }

    /// <summary>
    /// top.qcow2 -> mid.qcow2, a symlink to sub/mid.qcow2 whose backing name is the relative "base.qcow2": qemu
    /// resolves it from the folder of the name it opened (the symlink's), so top reads the image folder's base (0xaa),
    /// not sub/base.qcow2 (0xbb). Opening the checked canonical path must not change which file that is.
    /// </summary>
    [Fact]
    public async Task Relative_names_inside_a_symlinked_backing_file_resolve_from_the_symlinks_folder_as_in_qemu()
    {
        QemuTools.Bash(_folder.Path, """
            mkdir sub
            qemu-img create -q -f qcow2 base.qcow2 1M; qemu-io -f qcow2 base.qcow2 -c 'write -P 0xaa 0 4k' >/dev/null
            qemu-img create -q -f qcow2 sub/base.qcow2 1M; qemu-io -f qcow2 sub/base.qcow2 -c 'write -P 0xbb 0 4k' >/dev/null
            qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 sub/mid.qcow2
            ln -s sub/mid.qcow2 mid.qcow2
            qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
            qemu-io -r -f qcow2 top.qcow2 -c 'read -P 0xaa 0 4k' | grep -q 'read 4096'
            """);
        await using var image = Qcow2Image.Open(_folder.File("top.qcow2"), new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        var buffer = new byte[4096];
        await image.ReadAsync(0, buffer);
        Assert.True(buffer.All(b => b == 0xaa), $"read 0x{buffer[0]:x2}: the backing chain went elsewhere than qemu's");
    }

    [Fact]
    public async Task Backing_chain_in_the_image_folder_and_its_subfolders_opens()
    {
        QemuTools.Bash(_folder.Path, """
            mkdir -p bases/os
            qemu-img create -q -f raw bases/os/base.raw 1M; qemu-io -f raw bases/os/base.raw -c 'write -P 0x42 0 1M' >/dev/null
            qemu-img create -q -f qcow2 -b os/base.raw -F raw bases/mid.qcow2
            qemu-img create -q -f qcow2 -b bases/mid.qcow2 -F qcow2 img.qcow2
            """);
        await using var image = Qcow2Image.Open(_folder.File("img.qcow2"), new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open);
        var buffer = new byte[4096];
        await image.ReadAsync(0, buffer);
        Assert.All(buffer, b => Assert.Equal(0x42, b));
    }

    [Fact]
    public async Task Backing_root_allows_a_file_elsewhere_and_slash_allows_any()
    {
        string secret = SecretElsewhere();
        string path = ImageBackedBy(secret);
        foreach (string root in new[] { _elsewhere.Path, "/" })
        {
            await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true, BackingRoot = root }, HostFile.Open);
            var buffer = new byte[4096];
            await image.ReadAsync(0, buffer);
            Assert.All(buffer, b => Assert.Equal(0x53, b));
        }
        // The root does not reach back up: the image's own folder as root refuses the file elsewhere.
        Assert.Contains("outside the backing root", Refused(path, new ImageOpenOptions { ReadOnly = true, BackingRoot = _folder.Path }).Message);
    }

    [Fact]
    public void External_data_file_that_is_a_device_is_refused()
    {
        QemuTools.Bash(_folder.Path, "qemu-img create -q -f qcow2 -o data_file=data.raw img.qcow2 1M; rm data.raw; ln -s /dev/zero data.raw");
        Assert.Contains("not a regular file", Refused(_folder.File("img.qcow2")).Message);
    }

    [Fact]
    public void Info_does_not_follow_a_device_backing_file()
    {
        string path = ImageBackedBy("/dev/zero");
        var error = Assert.Throws<InvalidOperationException>(() =>
            QemuTools.RunIn(_folder.Path, "dotnet", [Path.Combine(AppContext.BaseDirectory, "nbdqcow.dll"), "info", path]));
        Assert.Contains("not a regular file", error.Message);
    }
}
