using System.Globalization;

namespace NbdQcow.Config;

/// <summary>Parses sizes like "10G", "512M", "1.5T", "4096" (binary units, qemu-img style; optional "iB"/"B").</summary>
public static class SizeParser
{
    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var s = text.Trim();
        if (s.EndsWith("iB", StringComparison.OrdinalIgnoreCase))
        {
            s = s[..^2];
        }
        else if (s.Length > 1 && (s[^1] == 'B' || s[^1] == 'b') && char.IsLetter(s[^2]))
        {
            s = s[..^1];
        }
        var shift = 0;
        if (s.Length > 0 && char.IsLetter(s[^1]))
        {
            shift = char.ToUpperInvariant(s[^1]) switch
            {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                'P' => 50,
                'E' => 60,
                _ => -1,
            };
            if (shift < 0)
            {
                return false;
            }
            s = s[..^1];
        }
        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number) || number < 0)
        {
            return false;
        }
        var value = number * (1L << shift);
        if (value > long.MaxValue || value != decimal.Truncate(value))
        {
            return false;
        }
        bytes = (long)value;
        return true;
    }
}
