using NbdQcow.Cache;

namespace NbdQcow.Image;

/// <summary>What every writable image advertises, computed once for every format (and for the hand-off device, which must advertise what the image will).</summary>
public static class CacheModeFeatures
{
    /// <summary>
    /// The features of any writable image in <paramref name="mode"/>; a format adds FAST_ZERO where it can. FLUSH and
    /// FUA are advertised in every mode, as qemu-nbd does: clients that flush regardless (libnbd refuses to send a FLUSH
    /// the server did not advertise) must work; in writethrough and directsync they are no-ops, every write being
    /// durable when acknowledged, which WRITE_THROUGH tells the server.
    /// </summary>
    public static BlockDeviceFeatures Writable(CacheMode mode)
    {
        var features = BlockDeviceFeatures.BlockStatus | BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn
            | BlockDeviceFeatures.Trim | BlockDeviceFeatures.Zero | BlockDeviceFeatures.Flush | BlockDeviceFeatures.Fua;
        if (!mode.HasVolatileCache()) features |= BlockDeviceFeatures.WriteThrough;
        return features;
    }
}
