namespace NbdQcow.Tests.Interop.Vm;

/// <summary>What the guest's /init does (tests/vm/guest-init.sh, kernel parameter nbdtest.mode).</summary>
public enum GuestMode
{
    /// <summary>Raw-device I/O, filesystem work, unmount, fsck, reconnect, fstrim, verify, disconnect.</summary>
    Full,

    /// <summary>Raw-device I/O and filesystem work up to the unmount; then "CRASH-POINT" and the server is killed.</summary>
    Crash,
}
