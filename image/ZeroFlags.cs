namespace NbdQcow.Image;

[Flags]
public enum ZeroFlags
{
    None = 0,
    Fua = 1 << 0,
    /// <summary>NBD_CMD_FLAG_NO_HOLE: the range must stay allocated (write zeroes, do not punch).</summary>
    NoHole = 1 << 1,
    /// <summary>NBD_CMD_FLAG_FAST_ZERO: fail with NotSupported rather than fall back to a slow write.</summary>
    FastZero = 1 << 2,
}
