using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// Persistent dirty bitmaps: the directory is parsed at open.
public sealed partial class Qcow2Image
{
    private void LoadBitmapDirectory()
    {
        // Without the autoclear bit the extension was left by a writer that did not maintain it: ignore it (spec).
        if (Header.Bitmaps is not { } extension || (Header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) == 0)
            return;
        var directory = new byte[extension.DirectorySize];
        File.Read((long)extension.DirectoryOffset, directory);
        var entries = Qcow2BitmapDirectory.Parse(directory, extension.BitmapCount);
        long fileLength = File.Length;
        foreach (var entry in entries)
        {
            if (entry.BitmapTableSize > 0)
                Qcow2HeaderValidator.CheckTable($"bitmap \"{entry.Name}\" bitmap_table_offset", entry.BitmapTableOffset,
                    entry.BitmapTableSize * 8L, Geometry.ClusterOffsetMask, fileLength);
        }
        BitmapDirectory = entries;
    }
}
