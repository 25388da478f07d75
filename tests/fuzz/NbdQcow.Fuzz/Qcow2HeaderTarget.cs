using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Fuzz;

/// <summary>
/// The qcow2 header, its extensions (feature names, bitmaps, backing format, data file) and the header checks
/// against the file length; an accepted header must serialise and parse back.
/// </summary>
public sealed class Qcow2HeaderTarget : IFuzzTarget
{
    public string Name => "qcow2-header";

    public string Description => "Qcow2Header.Parse + Qcow2HeaderValidator + serialise/parse round trip";

    public void Run(byte[] input)
    {
        if (input.Length < Qcow2Header.V2HeaderLength) return;
        try
        {
            // Parse wants the whole first cluster; bytes past the file end read as zero, as from a short file.
            var cluster = new byte[Math.Max(input.Length, 1 << Qcow2Header.MaxClusterBits)];
            input.CopyTo(cluster, 0);
            var header = Qcow2Header.Parse(cluster);
            Qcow2HeaderValidator.EnsureSupported(header);
            Qcow2HeaderValidator.Validate(header, input.Length);
            var geometry = Qcow2Geometry.FromHeader(header);
            _ = geometry.RequiredL1Entries;
            var serialised = header.Serialize();
            var again = new byte[Math.Max(serialised.Length, header.ClusterSize)];
            serialised.CopyTo(again, 0);
            Qcow2Header.Parse(again);
        }
        catch (Qcow2FormatException)
        {
        }
    }
}
