using System.Buffers.Binary;
using System.Security.Cryptography;
using NbdQcow.Image.Qcow2.Recover;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>Builds real images with qemu-img/qemu-io, damages them on purpose, and checks recovered images with qemu-img.</summary>
internal static class RecoverFixture
{
    public static Task<RecoveryReport> RecoverAsync(string image, string output, RecoveryOptions? options = null) =>
        Qcow2Recovery.RunAsync(image, (options ?? new RecoveryOptions { OutputPath = output }) with { OutputPath = output });

    /// <summary>qemu-img compare: true when both read the same (the second may be raw).</summary>
    public static bool Identical(string a, string b, string bFormat = "qcow2")
    {
        try
        {
            QemuTools.Run("qemu-img", "compare", "-q", "-f", "qcow2", "-F", bFormat, a, b);
            return true;
        }
        catch (InvalidOperationException e) when (e.Message.Contains("exited 1"))
        {
            return false;
        }
    }

    /// <summary>qemu-img check must call the image clean (no errors, no leaks); throws with its output otherwise.</summary>
    public static void AssertCheckClean(string image) => QemuTools.Run("qemu-img", "check", "-q", image);

    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream));
    }

    public static long L1TableOffset(string image) => (long)ReadU64(image, 40);

    /// <summary>The seed report's damage: an L1 entry that never reached the disk (its L2 table and data did).</summary>
    public static void ZeroL1Entry(string image, long slot) => WriteU64(image, L1TableOffset(image) + slot * 8, 0);

    public static long L1Entry(string image, long slot) => (long)ReadU64(image, L1TableOffset(image) + slot * 8);

    public static ulong ReadU64(string path, long offset)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read);
        var b = new byte[8];
        f.Position = offset;
        f.ReadExactly(b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    public static void WriteU64(string path, long offset, ulong value) => WriteBytes(path, offset, BitConverter.GetBytes(BinaryPrimitives.ReverseEndianness(value)));

    public static void WriteBytes(string path, long offset, byte[] bytes)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Position = offset;
        f.Write(bytes);
    }
}
