namespace NbdQcow.Image;

/// <summary>NBD base:allocation flags: HOLE = 1, ZERO = 2 (values match the wire).</summary>
[Flags]
public enum BlockExtentFlags : uint
{
    Data = 0,
    Hole = 1,
    Zero = 2,
}
