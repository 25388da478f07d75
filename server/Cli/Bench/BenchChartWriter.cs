using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace NbdQcow.Server.Cli.Bench;

/// <summary>
/// Writes a horizontal bar chart as a PNG with no graphics package: one group of bars per workload,
/// one bar per cache mode, length relative to the group's best, the figures written beside it in a
/// built-in 5x7 pixel font. The encoder is the minimal valid PNG: RGB, filter 0, one zlib IDAT.
/// </summary>
internal static class BenchChartWriter
{
    public sealed record Bar(string Label, double Value, string Text);

    public sealed record Group(string Title, IReadOnlyList<Bar> Bars);

    private const int Scale = 2;
    private const int CellWidth = 6 * Scale;
    private const int CellHeight = 8 * Scale;
    private const int Margin = 12;
    private const int LabelColumns = 14;
    private const int BarArea = 420;
    private const int TextColumns = 44;
    private const int BarHeight = CellHeight + 4;
    private const int BarGap = 4;

    private static readonly (byte R, byte G, byte B)[] Palette =
    [
        (0x2b, 0x7b, 0xba), (0xe0, 0x8a, 0x2b), (0x3a, 0xa0, 0x5a), (0xc0, 0x3c, 0x3c), (0x8a, 0x5c, 0xc0), (0x70, 0x70, 0x70),
    ];

    public static void Write(string path, string title, IReadOnlyList<Group> groups)
    {
        var width = Margin * 2 + LabelColumns * CellWidth + BarArea + CellWidth + TextColumns * CellWidth;
        var height = Margin * 2 + CellHeight * 2;
        foreach (var group in groups)
        {
            height += CellHeight + 6 + group.Bars.Count * (BarHeight + BarGap) + 10;
        }
        var canvas = new Canvas(width, height);
        canvas.Text(Margin, Margin, title, (0, 0, 0));
        var y = Margin + CellHeight * 2;
        foreach (var group in groups)
        {
            canvas.Text(Margin, y, group.Title, (0, 0, 0));
            y += CellHeight + 6;
            var max = 0.0;
            foreach (var bar in group.Bars)
            {
                max = Math.Max(max, bar.Value);
            }
            var barX = Margin + LabelColumns * CellWidth;
            for (var i = 0; i < group.Bars.Count; i++)
            {
                var bar = group.Bars[i];
                canvas.Text(Margin, y + 2, bar.Label, (0x30, 0x30, 0x30));
                var length = max > 0 ? (int)Math.Round(bar.Value / max * BarArea) : 0;
                canvas.Fill(barX, y, Math.Max(length, 1), BarHeight, Palette[i % Palette.Length]);
                canvas.Text(barX + BarArea + CellWidth, y + 2, bar.Text, (0x30, 0x30, 0x30));
                y += BarHeight + BarGap;
            }
            canvas.Fill(barX, y - BarGap - group.Bars.Count * (BarHeight + BarGap), 1, group.Bars.Count * (BarHeight + BarGap), (0, 0, 0));
            y += 10;
        }
        File.WriteAllBytes(path, canvas.ToPng());
    }

    private sealed class Canvas(int width, int height)
    {
        private readonly byte[] _rgb = CreateWhite(width * height * 3);

        private static byte[] CreateWhite(int length)
        {
            var pixels = new byte[length];
            Array.Fill(pixels, (byte)0xff);
            return pixels;
        }

        public void Fill(int x, int y, int w, int h, (byte R, byte G, byte B) colour)
        {
            for (var row = Math.Max(0, y); row < Math.Min(height, y + h); row++)
            {
                for (var col = Math.Max(0, x); col < Math.Min(width, x + w); col++)
                {
                    var i = (row * width + col) * 3;
                    _rgb[i] = colour.R;
                    _rgb[i + 1] = colour.G;
                    _rgb[i + 2] = colour.B;
                }
            }
        }

        public void Text(int x, int y, string text, (byte R, byte G, byte B) colour)
        {
            foreach (var c in text)
            {
                var glyph = PixelFont.Glyph(c);
                for (var row = 0; row < 7; row++)
                {
                    for (var col = 0; col < 5; col++)
                    {
                        if ((glyph[row] >> (4 - col) & 1) != 0)
                        {
                            Fill(x + col * Scale, y + row * Scale, Scale, Scale, colour);
                        }
                    }
                }
                x += CellWidth;
            }
        }

        public byte[] ToPng()
        {
            using var png = new MemoryStream();
            png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0d, 0x0a, 0x1a, 0x0a]);
            var header = new byte[13];
            BinaryPrimitives.WriteInt32BigEndian(header, width);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
            header[8] = 8;  // bit depth
            header[9] = 2;  // colour type: RGB
            WriteChunk(png, "IHDR", header);
            using var raw = new MemoryStream();
            using (var zlib = new ZLibStream(raw, CompressionLevel.Optimal, leaveOpen: true))
            {
                for (var row = 0; row < height; row++)
                {
                    zlib.WriteByte(0); // filter: none
                    zlib.Write(_rgb, row * width * 3, width * 3);
                }
            }
            WriteChunk(png, "IDAT", raw.ToArray());
            WriteChunk(png, "IEND", []);
            return png.ToArray();
        }

        private static void WriteChunk(Stream png, string type, byte[] data)
        {
            Span<byte> buffer = stackalloc byte[4];
            BinaryPrimitives.WriteInt32BigEndian(buffer, data.Length);
            png.Write(buffer);
            var typeBytes = Encoding.ASCII.GetBytes(type);
            png.Write(typeBytes);
            png.Write(data);
            var crc = PngCrc32.Update(PngCrc32.Update(0xffffffffu, typeBytes), data) ^ 0xffffffffu;
            BinaryPrimitives.WriteUInt32BigEndian(buffer, crc);
            png.Write(buffer);
        }
    }

    /// <summary>CRC-32 (IEEE, as PNG chunks use), table-driven.</summary>
    private static class PngCrc32
    {
        private static readonly uint[] Table = BuildTable();

        private static uint[] BuildTable()
        {
            var table = new uint[256];
            for (uint n = 0; n < 256; n++)
            {
                var c = n;
                for (var k = 0; k < 8; k++)
                {
                    c = (c & 1) != 0 ? 0xedb88320u ^ (c >> 1) : c >> 1;
                }
                table[n] = c;
            }
            return table;
        }

        public static uint Update(uint crc, ReadOnlySpan<byte> data)
        {
            foreach (var b in data)
            {
                crc = Table[(crc ^ b) & 0xff] ^ (crc >> 8);
            }
            return crc;
        }
    }

    /// <summary>A 5x7 font for digits, capitals (lower case drawn as capitals) and the punctuation the chart uses.</summary>
    private static class PixelFont
    {
        private static readonly Dictionary<char, byte[]> Glyphs = Build();

        public static byte[] Glyph(char c)
            => Glyphs.TryGetValue(char.ToUpperInvariant(c), out var glyph) ? glyph : Glyphs['?'];

        private static Dictionary<char, byte[]> Build()
        {
            var rows = new Dictionary<char, string>
            {
                [' '] = "00000 00000 00000 00000 00000 00000 00000",
                ['0'] = "01110 10001 10011 10101 11001 10001 01110",
                ['1'] = "00100 01100 00100 00100 00100 00100 01110",
                ['2'] = "01110 10001 00001 00010 00100 01000 11111",
                ['3'] = "11111 00010 00100 00010 00001 10001 01110",
                ['4'] = "00010 00110 01010 10010 11111 00010 00010",
                ['5'] = "11111 10000 11110 00001 00001 10001 01110",
                ['6'] = "00110 01000 10000 11110 10001 10001 01110",
                ['7'] = "11111 00001 00010 00100 01000 01000 01000",
                ['8'] = "01110 10001 10001 01110 10001 10001 01110",
                ['9'] = "01110 10001 10001 01111 00001 00010 01100",
                ['A'] = "01110 10001 10001 11111 10001 10001 10001",
                ['B'] = "11110 10001 10001 11110 10001 10001 11110",
                ['C'] = "01110 10001 10000 10000 10000 10001 01110",
                ['D'] = "11100 10010 10001 10001 10001 10010 11100",
                ['E'] = "11111 10000 10000 11110 10000 10000 11111",
                ['F'] = "11111 10000 10000 11110 10000 10000 10000",
                ['G'] = "01110 10001 10000 10111 10001 10001 01111",
                ['H'] = "10001 10001 10001 11111 10001 10001 10001",
                ['I'] = "01110 00100 00100 00100 00100 00100 01110",
                ['J'] = "00111 00010 00010 00010 00010 10010 01100",
                ['K'] = "10001 10010 10100 11000 10100 10010 10001",
                ['L'] = "10000 10000 10000 10000 10000 10000 11111",
                ['M'] = "10001 11011 10101 10101 10001 10001 10001",
                ['N'] = "10001 10001 11001 10101 10011 10001 10001",
                ['O'] = "01110 10001 10001 10001 10001 10001 01110",
                ['P'] = "11110 10001 10001 11110 10000 10000 10000",
                ['Q'] = "01110 10001 10001 10001 10101 10010 01101",
                ['R'] = "11110 10001 10001 11110 10100 10010 10001",
                ['S'] = "01111 10000 10000 01110 00001 00001 11110",
                ['T'] = "11111 00100 00100 00100 00100 00100 00100",
                ['U'] = "10001 10001 10001 10001 10001 10001 01110",
                ['V'] = "10001 10001 10001 10001 10001 01010 00100",
                ['W'] = "10001 10001 10001 10101 10101 10101 01010",
                ['X'] = "10001 10001 01010 00100 01010 10001 10001",
                ['Y'] = "10001 10001 10001 01010 00100 00100 00100",
                ['Z'] = "11111 00001 00010 00100 01000 10000 11111",
                ['.'] = "00000 00000 00000 00000 00000 01100 01100",
                [','] = "00000 00000 00000 00000 01100 00100 01000",
                ['-'] = "00000 00000 00000 11111 00000 00000 00000",
                ['/'] = "00000 00001 00010 00100 01000 10000 00000",
                [':'] = "00000 01100 01100 00000 01100 01100 00000",
                ['%'] = "11000 11001 00010 00100 01000 10011 00011",
                ['('] = "00010 00100 01000 01000 01000 00100 00010",
                [')'] = "01000 00100 00010 00010 00010 00100 01000",
                ['_'] = "00000 00000 00000 00000 00000 00000 11111",
                ['='] = "00000 00000 11111 00000 11111 00000 00000",
                ['+'] = "00000 00100 00100 11111 00100 00100 00000",
                ['?'] = "01110 10001 00001 00010 00100 00000 00100",
            };
            var glyphs = new Dictionary<char, byte[]>();
            foreach (var (c, text) in rows)
            {
                var parts = text.Split(' ');
                var glyph = new byte[7];
                for (var i = 0; i < 7; i++)
                {
                    glyph[i] = Convert.ToByte(parts[i], 2);
                }
                glyphs[c] = glyph;
            }
            return glyphs;
        }
    }
}
