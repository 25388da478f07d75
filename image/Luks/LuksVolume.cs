using System.Diagnostics;
using System.Security.Cryptography;

namespace NbdQcow.Image.Luks;

/// <summary>
/// Opens and creates LUKS1 volumes: checks that the cipher, mode and hash are ones the BCL can run, finds the
/// keyslot a secret opens (PBKDF2, keyslot decryption, anti-forensic merge, volume-key digest check) and builds the
/// sector cipher for the payload.
/// </summary>
public static class LuksVolume
{
    /// <summary>Key material starts 4 KiB into the header area, each keyslot's aligned to 4 KiB (as qemu lays it out).</summary>
    private const int FirstKeyMaterialSector = 8;
    private const int KeyMaterialAlignSectors = 8;
    /// <summary>What qemu creates: AES-256 in XTS mode, plain64 IVs, SHA-256.</summary>
    public const string DefaultCipherName = "aes";
    public const string DefaultCipherMode = "xts-plain64";
    public const string DefaultHashSpec = "sha256";
    public const int MinIterations = 1000;

    /// <summary>
    /// Most PBKDF2 work (iterations × output blocks of the hash) one derivation may ask for: about 20 times what a
    /// 2-second calibration gives on a fast machine, yet a header may say 2^31 − 1, hours of CPU per keyslot at open.
    /// </summary>
    public const long MaxDerivationWork = 1L << 26;

    /// <summary>Most PBKDF2 work one unlock may need, over every active keyslot and its volume-key digest check.</summary>
    public const long MaxUnlockWork = 1L << 27;

    /// <summary>Refuses a cipher, mode or hash nbdqcow cannot run, naming it.</summary>
    public static void EnsureSupported(LuksHeader header) => Describe(header);

    private static (bool Xts, SectorIvMode Iv, HashAlgorithmName? EssivHash, HashAlgorithmName Hash) Describe(LuksHeader header)
    {
        string spec = header.CipherSpec;
        if (!header.CipherName.Equals("aes", StringComparison.OrdinalIgnoreCase))
            throw new LuksFormatException("cipher", $"\"{spec}\" is not supported: only AES (aes-xts-plain64, aes-xts-plain, aes-cbc-plain, aes-cbc-plain64, aes-cbc-essiv:sha256) is");
        var hash = LuksHash.FromSpec(header.HashSpec)
            ?? throw new LuksFormatException("hash", $"\"{header.HashSpec}\" is not supported (sha1, sha256, sha384, sha512 are)");
        string mode = header.CipherMode.ToLowerInvariant();
        int dash = mode.IndexOf('-');
        string chaining = dash < 0 ? mode : mode[..dash];
        string iv = dash < 0 ? "" : mode[(dash + 1)..];
        HashAlgorithmName? essivHash = null;
        SectorIvMode ivMode;
        if (iv == "plain") ivMode = SectorIvMode.Plain;
        else if (iv == "plain64") ivMode = SectorIvMode.Plain64;
        else if (chaining == "cbc" && iv.StartsWith("essiv:", StringComparison.Ordinal)
            && LuksHash.FromSpec(iv["essiv:".Length..]) is { } h && LuksHash.DigestSize(h) is 16 or 24 or 32)
        {
            ivMode = SectorIvMode.Essiv;
            essivHash = h;
        }
        else
            throw new LuksFormatException("cipher mode", $"\"{spec}\" is not supported (aes-xts-plain64, aes-xts-plain, aes-cbc-plain, aes-cbc-plain64, aes-cbc-essiv:sha256 are)");
        bool xts = chaining switch
        {
            "xts" => true,
            "cbc" => false,
            _ => throw new LuksFormatException("cipher mode", $"\"{spec}\" is not supported (aes-xts-plain64, aes-xts-plain, aes-cbc-plain, aes-cbc-plain64, aes-cbc-essiv:sha256 are)"),
        };
        if (xts ? header.KeyBytes is not (32 or 48 or 64) : header.KeyBytes is not (16 or 24 or 32))
            throw new LuksFormatException("key_bytes", $"{header.KeyBytes} is no key size of {spec}");
        return (xts, ivMode, essivHash, hash);
    }

    /// <summary>The payload cipher for a volume key.</summary>
    public static SectorCipher CreateCipher(LuksHeader header, ReadOnlySpan<byte> key)
    {
        var (xts, iv, essivHash, _) = Describe(header);
        return xts ? new XtsSectorCipher(key, iv) : new CbcSectorCipher(key, iv, essivHash);
    }

    /// <summary>
    /// Returns the volume key <paramref name="secret"/> opens, trying every active keyslot.
    /// <paramref name="area"/> is the LUKS header area: header, then key material at its sector offsets.
    /// </summary>
    public static byte[] Unlock(LuksHeader header, ReadOnlySpan<byte> area, ReadOnlySpan<byte> secret)
    {
        var (_, _, _, hash) = Describe(header);
        if (header.MasterKeyDigestIterations is 0 or > int.MaxValue)
            throw new LuksFormatException("master key digest iterations", $"{header.MasterKeyDigestIterations} out of range");
        int keyBytes = header.KeyBytes;
        EnsureBoundedWork(header, hash);
        int splitLength = keyBytes * (int)LuksHeader.Stripes;
        int splitSectors = (splitLength + SectorCipher.SectorSize - 1) / SectorCipher.SectorSize;
        var material = new byte[splitSectors * SectorCipher.SectorSize];
        var candidate = new byte[keyBytes];
        int tried = 0;
        for (int i = 0; i < header.Keyslots.Count; i++)
        {
            var slot = header.Keyslots[i];
            if (!slot.Active) continue;
            if (slot.Stripes != LuksHeader.Stripes)
                throw new LuksFormatException($"keyslot {i} stripes", $"{slot.Stripes}: only {LuksHeader.Stripes} is supported");
            if (slot.Iterations is 0 or > int.MaxValue)
                throw new LuksFormatException($"keyslot {i} iterations", $"{slot.Iterations} out of range");
            long start = (long)slot.KeyMaterialSector * SectorCipher.SectorSize;
            if (start < LuksHeader.Size || start + splitLength > area.Length)
                throw new LuksFormatException($"keyslot {i} key material offset", $"sector {slot.KeyMaterialSector} lies outside the {area.Length}-byte LUKS header area");
            tried++;
            byte[] slotKey = Rfc2898DeriveBytes.Pbkdf2(secret, slot.Salt, (int)slot.Iterations, hash, keyBytes);
            material.AsSpan().Clear();
            int available = (int)Math.Min(material.Length, area.Length - start);
            area.Slice((int)start, available).CopyTo(material);
            using (var slotCipher = CreateCipher(header, slotKey))
                slotCipher.Decrypt(0, material);
            AntiForensicSplitter.Merge(hash, material.AsSpan(0, splitLength), (int)LuksHeader.Stripes, candidate);
            CryptographicOperations.ZeroMemory(slotKey);
            byte[] digest = Rfc2898DeriveBytes.Pbkdf2(candidate, header.MasterKeyDigestSalt, (int)header.MasterKeyDigestIterations, hash, LuksHeader.DigestLength);
            if (CryptographicOperations.FixedTimeEquals(digest, header.MasterKeyDigest))
            {
                CryptographicOperations.ZeroMemory(material);
                return candidate;
            }
        }
        CryptographicOperations.ZeroMemory(material);
        CryptographicOperations.ZeroMemory(candidate);
        throw new EncryptionKeyException(tried == 0
            ? "the LUKS header has no active keyslot; the image cannot be opened"
            : $"wrong key: it opens none of the {tried} active LUKS keyslot(s)");
    }

    /// <summary>
    /// Refuses, before any derivation runs, a header whose iteration counts would keep the open busy for far longer
    /// than any real calibration does (a crafted image would otherwise stall serve, info-less tools and recover).
    /// </summary>
    private static void EnsureBoundedWork(LuksHeader header, HashAlgorithmName hash)
    {
        long digestWork = Work(header.MasterKeyDigestIterations, LuksHeader.DigestLength, hash);
        if (digestWork > MaxDerivationWork)
            throw new LuksFormatException("master key digest iterations", TooMuchWork(header.MasterKeyDigestIterations, digestWork, MaxDerivationWork));
        long total = 0;
        for (int i = 0; i < header.Keyslots.Count; i++)
        {
            var slot = header.Keyslots[i];
            if (!slot.Active) continue;
            long slotWork = Work(slot.Iterations, header.KeyBytes, hash);
            if (slotWork > MaxDerivationWork)
                throw new LuksFormatException($"keyslot {i} iterations", TooMuchWork(slot.Iterations, slotWork, MaxDerivationWork));
            total += slotWork + digestWork;
            if (total > MaxUnlockWork)
                throw new LuksFormatException("keyslot iterations",
                    $"the active keyslots up to keyslot {i} need {total} PBKDF2 block iterations together, over the bound of {MaxUnlockWork}; the header may have been crafted to stall the open");
        }
    }

    /// <summary>PBKDF2 runs its iterations once per hash-sized block of the output.</summary>
    private static long Work(uint iterations, int outputBytes, HashAlgorithmName hash)
    {
        int digestSize = LuksHash.DigestSize(hash);
        return iterations * (long)((outputBytes + digestSize - 1) / digestSize);
    }

    private static string TooMuchWork(uint iterations, long work, long bound) =>
        $"{iterations} iterations ({work} PBKDF2 block iterations) are over the bound of {bound}; the header may have been crafted to stall the open";

    /// <summary>
    /// Builds a new LUKS1 header area (aes-xts-plain64, sha256, a random 512-bit volume key, keyslot 0 opened by
    /// <paramref name="secret"/>) with PBKDF2 iterations calibrated to take about <paramref name="iterTime"/> here,
    /// as qemu-img's encrypt.iter-time. Returns the whole area: header and the key material of all eight keyslots.
    /// </summary>
    public static byte[] CreateArea(ReadOnlySpan<byte> secret, TimeSpan iterTime)
    {
        const int keyBytes = 64;
        var hash = HashAlgorithmName.SHA256;
        int splitLength = keyBytes * (int)LuksHeader.Stripes;
        int splitSectors = (splitLength + SectorCipher.SectorSize - 1) / SectorCipher.SectorSize;
        int slotSectors = (splitSectors + KeyMaterialAlignSectors - 1) / KeyMaterialAlignSectors * KeyMaterialAlignSectors;
        int areaSectors = FirstKeyMaterialSector + LuksHeader.KeyslotCount * slotSectors;
        var area = new byte[areaSectors * SectorCipher.SectorSize];

        long perSecond = IterationsPerSecond(hash);
        // Never more than an open accepts (the slot key is 64 bytes: two SHA-256 blocks).
        long maxSlotIterations = MaxDerivationWork / Work(1, keyBytes, hash);
        int slotIterations = (int)Math.Clamp(perSecond * iterTime.TotalMilliseconds / 1000, MinIterations, maxSlotIterations);
        // qemu spends an eighth of the time on the volume key digest, checked once per open.
        int digestIterations = (int)Math.Clamp(perSecond * iterTime.TotalMilliseconds / 1000 / 8, MinIterations, maxSlotIterations);

        byte[] masterKey = RandomNumberGenerator.GetBytes(keyBytes);
        byte[] digestSalt = RandomNumberGenerator.GetBytes(LuksHeader.SaltLength);
        byte[] digest = Rfc2898DeriveBytes.Pbkdf2(masterKey, digestSalt, digestIterations, hash, LuksHeader.DigestLength);
        var slots = new LuksKeyslot[LuksHeader.KeyslotCount];
        byte[] slotSalt = RandomNumberGenerator.GetBytes(LuksHeader.SaltLength);
        for (int i = 0; i < slots.Length; i++)
        {
            slots[i] = new LuksKeyslot
            {
                Active = i == 0,
                Iterations = i == 0 ? (uint)slotIterations : 0,
                Salt = i == 0 ? slotSalt : new byte[LuksHeader.SaltLength],
                KeyMaterialSector = (uint)(FirstKeyMaterialSector + i * slotSectors),
                Stripes = LuksHeader.Stripes,
            };
        }
        var header = new LuksHeader
        {
            CipherName = DefaultCipherName,
            CipherMode = DefaultCipherMode,
            HashSpec = DefaultHashSpec,
            PayloadOffsetSectors = (uint)areaSectors,
            KeyBytes = keyBytes,
            MasterKeyDigest = digest,
            MasterKeyDigestSalt = digestSalt,
            MasterKeyDigestIterations = (uint)digestIterations,
            Uuid = Guid.NewGuid().ToString(),
            Keyslots = slots,
        };
        header.Serialize().CopyTo(area, 0);

        var material = new byte[splitSectors * SectorCipher.SectorSize];
        AntiForensicSplitter.Split(hash, masterKey, (int)LuksHeader.Stripes, material.AsSpan(0, splitLength));
        byte[] slotKey = Rfc2898DeriveBytes.Pbkdf2(secret, slotSalt, slotIterations, hash, keyBytes);
        using (var slotCipher = CreateCipher(header, slotKey))
            slotCipher.Encrypt(0, material);
        material.AsSpan(0, splitLength).CopyTo(area.AsSpan(FirstKeyMaterialSector * SectorCipher.SectorSize));
        CryptographicOperations.ZeroMemory(slotKey);
        CryptographicOperations.ZeroMemory(masterKey);
        return area;
    }

    /// <summary>PBKDF2 iterations this machine runs per second (measured on a short run, as qemu calibrates).</summary>
    private static long IterationsPerSecond(HashAlgorithmName hash)
    {
        const int probe = 1 << 14;
        byte[] salt = new byte[LuksHeader.SaltLength];
        byte[] password = new byte[32];
        var watch = Stopwatch.StartNew();
        int iterations = 0;
        while (watch.ElapsedMilliseconds < 100 && iterations < (1 << 24))
        {
            Rfc2898DeriveBytes.Pbkdf2(password, salt, probe, hash, 64);
            iterations += probe;
        }
        double seconds = Math.Max(watch.Elapsed.TotalSeconds, 1e-6);
        return (long)(iterations / seconds);
    }
}
