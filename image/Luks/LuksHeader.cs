using System.Buffers.Binary;
using System.Text;

namespace NbdQcow.Image.Luks;

/// <summary>
/// The LUKS1 partition header (592 bytes, big-endian): cipher, mode, hash, key size, the volume key's PBKDF2
/// digest and eight keyslots. qcow2 keeps it, with its key material, in clusters named by the full-disk-encryption
/// header extension.
/// </summary>
public sealed class LuksHeader
{
    public const int Size = 592;
    public const int SaltLength = 32;
    public const int DigestLength = 20;
    public const int KeyslotCount = 8;
    /// <summary>The only stripe count qemu and cryptsetup use; others are refused.</summary>
    public const uint Stripes = 4000;
    /// <summary>Largest key accepted (AES-256-XTS: 64 bytes); bounds what a crafted header can make us read.</summary>
    public const int MaxKeyBytes = 64;
    private static ReadOnlySpan<byte> Magic => [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE];

    public string CipherName { get; init; } = "";
    public string CipherMode { get; init; } = "";
    public string HashSpec { get; init; } = "";
    public uint PayloadOffsetSectors { get; init; }
    public int KeyBytes { get; init; }
    public byte[] MasterKeyDigest { get; init; } = new byte[DigestLength];
    public byte[] MasterKeyDigestSalt { get; init; } = new byte[SaltLength];
    public uint MasterKeyDigestIterations { get; init; }
    public string Uuid { get; init; } = "";
    public IReadOnlyList<LuksKeyslot> Keyslots { get; init; } = [];

    /// <summary>Parses the header; a malformed one is refused with a message naming the field (never trusted for sizes).</summary>
    public static LuksHeader Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < Size || !data[..6].SequenceEqual(Magic))
            throw new LuksFormatException("magic", "not a LUKS header");
        ushort version = BinaryPrimitives.ReadUInt16BigEndian(data[6..]);
        if (version != 1)
            throw new LuksFormatException("version", $"{version}: only LUKS version 1 is supported");
        var slots = new LuksKeyslot[KeyslotCount];
        for (int i = 0; i < KeyslotCount; i++)
        {
            var s = data.Slice(208 + i * 48, 48);
            uint marker = BinaryPrimitives.ReadUInt32BigEndian(s);
            if (marker is not (LuksKeyslot.ActiveMarker or LuksKeyslot.InactiveMarker))
                throw new LuksFormatException($"keyslot {i} state", $"0x{marker:x8} is neither active nor inactive");
            slots[i] = new LuksKeyslot
            {
                Active = marker == LuksKeyslot.ActiveMarker,
                Iterations = BinaryPrimitives.ReadUInt32BigEndian(s[4..]),
                Salt = s.Slice(8, SaltLength).ToArray(),
                KeyMaterialSector = BinaryPrimitives.ReadUInt32BigEndian(s[40..]),
                Stripes = BinaryPrimitives.ReadUInt32BigEndian(s[44..]),
            };
        }
        var header = new LuksHeader
        {
            CipherName = Text(data.Slice(8, 32)),
            CipherMode = Text(data.Slice(40, 32)),
            HashSpec = Text(data.Slice(72, 32)),
            PayloadOffsetSectors = BinaryPrimitives.ReadUInt32BigEndian(data[104..]),
            KeyBytes = checked((int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(data[108..]), int.MaxValue)),
            MasterKeyDigest = data.Slice(112, DigestLength).ToArray(),
            MasterKeyDigestSalt = data.Slice(132, SaltLength).ToArray(),
            MasterKeyDigestIterations = BinaryPrimitives.ReadUInt32BigEndian(data[164..]),
            Uuid = Text(data.Slice(168, 40)),
            Keyslots = slots,
        };
        if (header.KeyBytes is < 1 or > MaxKeyBytes)
            throw new LuksFormatException("key_bytes", $"{header.KeyBytes}: must be 1..{MaxKeyBytes}");
        return header;
    }

    public byte[] Serialize()
    {
        var d = new byte[Size];
        Magic.CopyTo(d);
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(6), 1);
        WriteText(d.AsSpan(8, 32), CipherName);
        WriteText(d.AsSpan(40, 32), CipherMode);
        WriteText(d.AsSpan(72, 32), HashSpec);
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(104), PayloadOffsetSectors);
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(108), (uint)KeyBytes);
        MasterKeyDigest.CopyTo(d.AsSpan(112));
        MasterKeyDigestSalt.CopyTo(d.AsSpan(132));
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(164), MasterKeyDigestIterations);
        WriteText(d.AsSpan(168, 40), Uuid);
        for (int i = 0; i < KeyslotCount; i++)
        {
            var slot = Keyslots[i];
            var s = d.AsSpan(208 + i * 48, 48);
            BinaryPrimitives.WriteUInt32BigEndian(s, slot.Active ? LuksKeyslot.ActiveMarker : LuksKeyslot.InactiveMarker);
            BinaryPrimitives.WriteUInt32BigEndian(s[4..], slot.Iterations);
            slot.Salt.CopyTo(s[8..]);
            BinaryPrimitives.WriteUInt32BigEndian(s[40..], slot.KeyMaterialSector);
            BinaryPrimitives.WriteUInt32BigEndian(s[44..], slot.Stripes);
        }
        return d;
    }

    /// <summary>"aes-xts-plain64" style: cipher name and mode as dm-crypt writes them.</summary>
    public string CipherSpec => $"{CipherName}-{CipherMode}";

    public int ActiveKeyslots
    {
        get
        {
            int n = 0;
            foreach (var slot in Keyslots)
                if (slot.Active) n++;
            return n;
        }
    }

    private static string Text(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        if (end < 0) end = field.Length;
        var text = Encoding.ASCII.GetString(field[..end]);
        foreach (char c in text)
            if (c < 0x20 || c > 0x7e) return "(not printable)";
        return text;
    }

    private static void WriteText(Span<byte> field, string text)
    {
        field.Clear();
        Encoding.ASCII.GetBytes(text.AsSpan(0, Math.Min(text.Length, field.Length - 1)), field);
    }
}
