using System.Diagnostics;
using System.Text.Json;
using NbdQcow.HostIo;
using NbdQcow.Tests.Unit.HostIo;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>`nbdqcow recover` (the real CLI process): exit codes, refusals, JSON, and the input never changed.</summary>
public sealed class RecoverCommandTests
{
    private static (int Exit, string Stdout, string Stderr) Nbdqcow(string folder, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "nbdqcow.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(1)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("nbdqcow recover did not finish in a minute");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Recover_json_report_parses_and_the_image_is_unchanged_and_a_second_run_refuses_to_overwrite()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 1G
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x33 0 3M' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        RecoverFixture.ZeroL1Entry(folder.File("img.qcow2"), 0);
        string before = RecoverFixture.Sha256(folder.File("img.qcow2"));

        var (exit, stdout, _) = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "out.qcow2", "--json");

        Assert.Equal(1, exit); // a lost L1 entry is damage, even when its table was placed
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(1, json.RootElement.GetProperty("exit-code").GetInt32());
        Assert.Equal(0, json.RootElement.GetProperty("orphan-l2-tables")[0].GetProperty("placed-slot").GetInt64());
        Assert.Equal(2, json.RootElement.GetProperty("recovered").GetProperty("clusters-from-orphan-tables").GetInt64());
        Assert.Equal(before, RecoverFixture.Sha256(folder.File("img.qcow2")));
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0x33 0 3M' | grep -q 'read 3145728'");

        string output = RecoverFixture.Sha256(folder.File("out.qcow2"));
        var again = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "out.qcow2");
        Assert.Equal(2, again.Exit);
        Assert.Contains("already exists", again.Stderr);
        Assert.Equal(output, RecoverFixture.Sha256(folder.File("out.qcow2")));

        var forced = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "out.qcow2", "--force", "--format", "raw");
        Assert.Equal(1, forced.Exit);
        Assert.True(RecoverFixture.Identical(folder.File("original.qcow2"), folder.File("out.qcow2"), "raw"));
        Assert.Equal(before, RecoverFixture.Sha256(folder.File("img.qcow2")));
    }

    [Fact]
    public void Recover_refuses_a_raw_input_the_image_itself_as_output_and_a_damaged_header_with_exit_2_writing_nothing()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f raw disk.raw 1M
            qemu-img create -q -f qcow2 img.qcow2 1M
            cp img.qcow2 bad.qcow2
            printf '\x00\x00\x00\x09' | dd of=bad.qcow2 bs=1 seek=4 conv=notrunc status=none
            """);
        string before = RecoverFixture.Sha256(folder.File("img.qcow2"));

        var raw = Nbdqcow(folder.Path, "recover", "disk.raw", "--output", "out.qcow2");
        Assert.Equal(2, raw.Exit);
        Assert.Contains("not a qcow2 image", raw.Stderr);

        var self = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "img.qcow2", "--force");
        Assert.Equal(2, self.Exit);
        Assert.Contains("never writes the image it reads", self.Stderr);
        Assert.Equal(before, RecoverFixture.Sha256(folder.File("img.qcow2")));

        var header = Nbdqcow(folder.Path, "recover", "bad.qcow2", "--output", "out.qcow2");
        Assert.Equal(2, header.Exit);
        Assert.Contains("version = 9", header.Stderr); // a garbage cluster_bits is probed instead; a version is not guessed

        var missing = Nbdqcow(folder.Path, "recover", "img.qcow2");
        Assert.Equal(2, missing.Exit); // --output is required: bad usage
        Assert.Contains("--output", missing.Stderr);

        Assert.False(File.Exists(folder.File("out.qcow2")));
        Assert.Empty(Directory.GetFiles(folder.Path, "*.partial-*"));
    }

    [Fact]
    public void Recover_help_names_the_options_and_the_exit_codes()
    {
        var (exit, stdout, _) = Nbdqcow(Path.GetTempPath(), "recover", "--help");
        Assert.Equal(0, exit);
        foreach (var word in new[] { "--output", "--format", "--force", "--snapshot", "--fill-from-snapshots", "--keep-backing", "--json", "lost", "Exit codes", "--quiet", "--force-share", "3 recovered with" })
            Assert.Contains(word, stdout);
    }

    [Fact]
    public void Recover_is_refused_while_a_writer_holds_the_image_unless_force_share_and_never_replaces_an_output_in_use()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=64k img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x61 0 128k' >/dev/null
            qemu-img create -q -f qcow2 used.qcow2 1M
            """);
        using (ImageLock.Acquire(folder.File("img.qcow2"), ImageLocking.On, readOnly: false))
        {
            var refused = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "out.qcow2");
            Assert.Equal(2, refused.Exit);
            Assert.Contains("--force-share", refused.Stderr);
            Assert.False(File.Exists(folder.File("out.qcow2")));

            var shared = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "out.qcow2", "-U", "--quiet");
            Assert.Equal(0, shared.Exit);
            Assert.Equal("", shared.Stderr);
        }
        string usedBefore = RecoverFixture.Sha256(folder.File("used.qcow2"));
        using (ImageLock.Acquire(folder.File("used.qcow2"), ImageLocking.On, readOnly: true))
        {
            var replace = Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "used.qcow2", "--force");
            Assert.Equal(2, replace.Exit);
            Assert.Contains("--force will not replace an output someone uses", replace.Stderr);
        }
        Assert.Equal(usedBefore, RecoverFixture.Sha256(folder.File("used.qcow2")));
        Assert.Equal(0, Nbdqcow(folder.Path, "recover", "img.qcow2", "--output", "used.qcow2", "--force").Exit);
    }
}
