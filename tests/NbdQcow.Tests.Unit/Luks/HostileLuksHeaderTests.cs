using System.Buffers.Binary;
using System.Text;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Tests.Unit.Luks;

/// <summary>A damaged or crafted LUKS header inside a qcow2 image is refused with one message naming the field, reading nothing out of bounds.</summary>
public sealed class HostileLuksHeaderTests : IDisposable
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("hostile");
    private readonly TempDirectory _folder = new("unit", diskBacked: true);

    public void Dispose() => _folder.Dispose();

    /// <summary>Creates an encrypted image and returns its path and where the LUKS header area starts.</summary>
    private (string Path, long LuksOffset) Create()
    {
        string path = _folder.File("enc.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20, EncryptionSecret = Secret, EncryptionIterTime = TimeSpan.FromMilliseconds(1) });
        using var file = HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false));
        var header = Qcow2Header.Read(file);
        return (path, Qcow2HeaderValidator.EncryptionHeaderArea(header, file.Length)!.Value.Offset);
    }

    private static void Patch(string path, long offset, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.Position = offset;
        stream.Write(bytes);
    }

    private static string Refused(string path)
    {
        var error = Assert.Throws<Qcow2FormatException>(() =>
            Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null, EncryptionKey = Secret }, HostFile.Open));
        return error.Message;
    }

    [Fact]
    public void A_header_without_the_luks_magic_is_refused()
    {
        var (path, luks) = Create();
        Patch(path, luks, "XXXX"u8);
        Assert.Contains("LUKS magic: not a LUKS header", Refused(path));
    }

    [Fact]
    public void Key_material_outside_the_header_area_is_refused_naming_the_keyslot()
    {
        var (path, luks) = Create();
        var sector = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(sector, 0x7fff_0000);
        Patch(path, luks + 208 + 40, sector); // keyslot 0 key_offset
        Assert.Contains("keyslot 0 key material offset", Refused(path));
    }

    [Fact]
    public void An_oversized_key_is_refused_before_anything_is_derived()
    {
        var (path, luks) = Create();
        var keyBytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(keyBytes, 1 << 30);
        Patch(path, luks + 108, keyBytes);
        Assert.Contains("key_bytes", Refused(path));
    }

    [Fact]
    public void An_encryption_header_extension_past_the_end_of_the_file_is_refused()
    {
        var (path, _) = Create();
        using (var file = HostFile.Open(path, new HostFileOptions(ReadOnly: false, Direct: false)))
        {
            var header = Qcow2Header.Read(file);
            var extension = header.UnknownExtensions.Single(e => e.Type == Qcow2HeaderExtensionType.FullDiskEncryption);
            BinaryPrimitives.WriteUInt64BigEndian(extension.Data.AsSpan(8), 15L << 20);
            file.Write(0, header.Serialize());
        }
        Assert.Contains("past the end of the file", Refused(path));
    }
}
