namespace NbdQcow.Config.Settings;

/// <summary>A setting's text checked: the value, or what is wrong with it.</summary>
public readonly record struct SettingParse<T>(T? Value, string? Problem)
{
    public static SettingParse<T> Ok(T value) => new(value, null);

    public static SettingParse<T> Bad(string problem) => new(default, problem);

    /// <summary>"'TEXT' is not allowed; allowed: ALLOWED", the usual wording.</summary>
    public static SettingParse<T> NotAllowed(string text, string allowed) => new(default, $"'{text}' is not allowed; allowed: {allowed}");
}
