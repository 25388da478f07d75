using System.Globalization;

namespace NbdQcow.Config.Settings;

/// <summary>The value kinds settings share: booleans, bounded whole numbers, milliseconds or off, sizes, enum names.</summary>
public static class SettingParsers
{
    public static SettingParse<bool> Bool(string text) => text.Trim().ToLowerInvariant() switch
    {
        "true" or "yes" or "on" or "1" => SettingParse<bool>.Ok(true),
        "false" or "no" or "off" or "0" => SettingParse<bool>.Ok(false),
        _ => SettingParse<bool>.NotAllowed(text, "true, false"),
    };

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>; <paramref name="allowed"/> says so in the message.</summary>
    public static Func<string, SettingParse<long>> Whole(long min, long max, string allowed) => text =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? SettingParse<long>.Ok(value)
            : SettingParse<long>.NotAllowed(text, allowed);

    /// <summary>Milliseconds (or seconds) in a range, or "off" for null.</summary>
    public static Func<string, SettingParse<TimeSpan?>> TimeOrOff(long min, long max, Func<long, TimeSpan> unit, string allowed) => text =>
    {
        if (text.Trim().Equals("off", StringComparison.OrdinalIgnoreCase))
            return SettingParse<TimeSpan?>.Ok(null);
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? SettingParse<TimeSpan?>.Ok(unit(value))
            : SettingParse<TimeSpan?>.NotAllowed(text, allowed);
    };

    /// <summary>Names of <typeparamref name="TEnum"/> in lower case: report, enospc, retry, stop.</summary>
    public static SettingParse<TEnum> EnumName<TEnum>(string text) where TEnum : struct, Enum
    {
        var trimmed = text.Trim();
        if (trimmed.Length > 0 && char.IsLetter(trimmed[0]) && Enum.TryParse<TEnum>(trimmed, ignoreCase: true, out var value))
            return SettingParse<TEnum>.Ok(value);
        return SettingParse<TEnum>.NotAllowed(text, string.Join(", ", Enum.GetNames<TEnum>().Select(n => n.ToLowerInvariant())));
    }

    /// <summary>Text as given, or null when empty or blank.</summary>
    public static SettingParse<string?> OptionalText(string text) => SettingParse<string?>.Ok(string.IsNullOrWhiteSpace(text) ? null : text);
}
