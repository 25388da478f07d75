namespace NbdQcow.Image;

/// <summary>What a block device can do; maps onto NBD transmission flags.</summary>
[Flags]
public enum BlockDeviceFeatures
{
    None = 0,
    ReadOnly = 1 << 0,
    /// <summary>FLUSH is accepted (a no-op where <see cref="WriteThrough"/> says every change is durable already).</summary>
    Flush = 1 << 1,
    Fua = 1 << 2,
    Trim = 1 << 3,
    Zero = 1 << 4,
    /// <summary>Zeroing can fail fast with NotSupported instead of writing zeroes slowly.</summary>
    FastZero = 1 << 5,
    Cache = 1 << 6,
    /// <summary>Safe for several connections: one flush covers writes from all of them.</summary>
    MultiConn = 1 << 7,
    BlockStatus = 1 << 8,
    /// <summary>Every change is durable before it completes (writethrough, directsync): no volatile cache.</summary>
    WriteThrough = 1 << 9,
}
