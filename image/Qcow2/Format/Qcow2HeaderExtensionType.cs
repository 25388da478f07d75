namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Header extension type codes from the qcow2 spec.</summary>
public static class Qcow2HeaderExtensionType
{
    public const uint End = 0x00000000;
    public const uint BackingFormat = 0xe2792aca;
    public const uint FeatureNameTable = 0x6803f857;
    public const uint Bitmaps = 0x23852875;
    public const uint FullDiskEncryption = 0x0537be77;
    public const uint ExternalDataFile = 0x44415441;
}
