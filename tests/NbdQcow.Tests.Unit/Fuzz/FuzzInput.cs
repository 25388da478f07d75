namespace NbdQcow.Tests.Unit.Fuzz;

/// <summary>
/// A fuzzer-found input written as its length and the runs of non-zero bytes (offset, hex), so a regression test
/// carries the exact bytes and stays readable.
/// </summary>
internal static class FuzzInput
{
    public static byte[] FromRuns(int length, params (int Offset, string Hex)[] runs)
    {
        var bytes = new byte[length];
        foreach (var (offset, hex) in runs) Convert.FromHexString(hex).CopyTo(bytes, offset);
        return bytes;
    }
}
