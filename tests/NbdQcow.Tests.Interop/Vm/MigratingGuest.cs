using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// One qemu-system-x86_64 (TCG, QMP) running the test guest in its migrate mode (tests/vm/guest-init.sh): the
/// guest's disk is a virtio-blk device on the block node the caller describes (an NBD client of nbdqcow, or a
/// qcow2 file). A source boots the guest; a destination (<c>-incoming</c>) receives it by migration and then runs
/// it. The same command line on both sides apart from the log and socket paths and <c>-incoming</c>, as
/// migration requires. The console goes to a file per qemu; the guest reads its "switch-over done" signal from
/// its second serial port, a Unix socket of this qemu.
/// </summary>
public sealed class MigratingGuest : IAsyncDisposable
{
    /// <summary>The guest printed its pre-migration manifest and now writes files without pause.</summary>
    public const string ReadyMarker = "MIGRATE-READY";

    /// <summary>The guest's answer to a GO ("GO after N files written during the migration").</summary>
    public const string SwitchOverSeenMarker = "GO after ";

    /// <summary>The prefix of the manifest lines of the files written before the migration.</summary>
    public const string BeforeManifestPrefix = "MANIFEST-BEFORE: ";

    /// <summary>The guest's disk size: small, so mkfs and the host's checks take little time.</summary>
    public const long DiskSize = 64L << 20;

    /// <summary>The block node name the caller's -blockdev must use.</summary>
    public const string DiskNode = "disk0";

    private static readonly TimeSpan PowerOffTimeout = TimeSpan.FromSeconds(30);

    private readonly string signalSocket;

    private MigratingGuest(QemuQmpProcess qemu, SerialConsoleLog serial, string signalSocket, string name)
    {
        Qemu = qemu;
        Serial = serial;
        this.signalSocket = signalSocket;
        Name = name;
    }

    public QemuQmpProcess Qemu { get; }

    public SerialConsoleLog Serial { get; }

    public string Name { get; }

    /// <summary>
    /// Starts qemu named <paramref name="name"/> (file names in <paramref name="workDirectory"/>) with the disk
    /// <paramref name="diskBlockdev"/> (-blockdev JSON, node <see cref="DiskNode"/>); with
    /// <paramref name="incomingPort"/> it waits for a migration on 127.0.0.1:PORT instead of booting.
    /// </summary>
    public static async Task<MigratingGuest> StartAsync(string guestDirectory, string workDirectory, string name,
        string diskBlockdev, int? incomingPort = null)
    {
        var serialLog = Path.Combine(workDirectory, $"{name}-serial.log");
        var signalSocket = Path.Combine(workDirectory, $"{name}-signal.sock");
        var size = DiskSize.ToString(CultureInfo.InvariantCulture);
        List<string> arguments =
        [
            "-machine", "pc,accel=tcg", "-cpu", "max", "-m", "256", "-smp", "1",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", Path.Combine(guestDirectory, "kernel", "vmlinuz"),
            "-initrd", Path.Combine(guestDirectory, "initramfs.cpio.gz"),
            // no_timer_check: on a loaded host the emulated guest is too slow for the kernel's IO-APIC timer check,
            // which then panics ("IO-APIC + timer doesn't work!").
            "-append", $"console=ttyS0 quiet panic=-1 no_timer_check nbdtest.size={size} nbdtest.mode=migrate",
            "-serial", $"file:{serialLog}",
            "-chardev", $"socket,id=signal,path={signalSocket},server=on,wait=off", "-serial", "chardev:signal",
            "-blockdev", diskBlockdev,
            "-device", $"virtio-blk-pci,drive={DiskNode},id=vda,romfile=",
        ];
        if (incomingPort is { } port)
        {
            arguments.AddRange(["-incoming", $"tcp:127.0.0.1:{port}"]);
        }

        var qemu = await QemuQmpProcess.StartSystemGuestAsync(arguments, workDirectory);
        return new MigratingGuest(qemu, new SerialConsoleLog(serialLog), signalSocket, name);
    }

    /// <summary>Waits (bounded) for a console line containing <paramref name="marker"/>; fails the test if it never comes.</summary>
    public async Task WaitForLineAsync(string marker, TimeSpan timeout, Func<string> context)
    {
        var seen = await Serial.WaitForLineAsync(timeout, () => Qemu.HasExited, marker, GuestMachine.ResultPrefix);
        Assert.True(seen == marker, $"{Name}: no \"{marker}\" line within {timeout.TotalSeconds:F0} s\n{context()}");
    }

    /// <summary>
    /// Tells the guest the switch-over is done ("GO" on its second serial port) and waits (bounded) for its answer;
    /// says it again every few seconds meanwhile, since a second GO is harmless and a starved guest may be slow.
    /// </summary>
    public async Task SignalSwitchOverDoneAsync(TimeSpan timeout, Func<string> context)
    {
        var resendEvery = TimeSpan.FromSeconds(15);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            await SendGoAsync();
            var left = timeout - clock.Elapsed;
            var seen = await Serial.WaitForLineAsync(left < resendEvery ? left : resendEvery, () => Qemu.HasExited,
                SwitchOverSeenMarker, GuestMachine.ResultPrefix);
            if (seen == SwitchOverSeenMarker)
            {
                return;
            }

            Assert.True(seen is null && !Qemu.HasExited && clock.Elapsed < timeout,
                $"{Name}: the guest did not answer GO within {timeout.TotalSeconds:F0} s\n{context()}");
        }
    }

    private async Task SendGoAsync()
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(signalSocket));
        await socket.SendAsync(Encoding.ASCII.GetBytes("GO\n"));
        // An orderly end: what was sent stays queued for qemu after the close.
        socket.Shutdown(SocketShutdown.Send);
    }

    /// <summary>
    /// Waits for exactly one "RESULT: PASS" on this qemu's console and for qemu to exit after the guest powered off;
    /// fails the test with <paramref name="context"/> otherwise.
    /// </summary>
    public async Task AssertPassedAsync(TimeSpan timeout, Func<string> context)
    {
        var printed = await Serial.WaitForLineAsync(timeout, () => Qemu.HasExited, GuestMachine.ResultPrefix) is not null;
        var exited = await Qemu.WaitForExitAsync(printed ? PowerOffTimeout : TimeSpan.Zero);
        var results = Serial.Lines()
            .Select(l => l.IndexOf(GuestMachine.ResultPrefix, StringComparison.Ordinal) is var at and >= 0 ? l[at..].Trim() : null)
            .OfType<string>()
            .ToList();
        var problem = results switch
        {
            [] => $"no RESULT line within {timeout.TotalSeconds:F0} s",
            ["RESULT: PASS"] when !exited => "the guest passed but qemu did not exit after it powered off",
            ["RESULT: PASS"] => null,
            _ => $"the guest reported {string.Join(" | ", results)}",
        };
        Assert.True(problem is null, $"{Name}: {problem}\n{context()}");
    }

    /// <summary>qemu's output and QMP transcript and the end of the console (manifest lines left out).</summary>
    public string Describe()
    {
        var console = Serial.Lines().Where(l => !l.StartsWith("MANIFEST", StringComparison.Ordinal)).TakeLast(60);
        return $"=== {Name}: {Qemu.Describe()}\n--- {Name} console (last 60 lines, manifests omitted) ---\n" +
               string.Join('\n', console);
    }

    public ValueTask DisposeAsync() => Qemu.DisposeAsync();
}
