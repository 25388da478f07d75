namespace NbdQcow.Config.Settings;

/// <summary>One command-line option of `nbdqcow serve` that sets a setting (most settings have one; Locking has two flags).</summary>
/// <param name="Name">The option as typed: "--cache".</param>
/// <param name="HelpName">The value's placeholder in --help ("MODE"); null for a flag.</param>
/// <param name="Description">The --help text.</param>
/// <param name="FlagValue">For a flag, the value it sets ("true", or "off" for --no-lock).</param>
public sealed record CliSpelling(string Name, string? HelpName, string Description, CliShape Shape = CliShape.Value, string FlagValue = "true")
{
    /// <summary>Values shell completion offers for it (a closed set such as the cache modes), or null.</summary>
    public IReadOnlyList<string>? Completions { get; init; }

    public static CliSpelling Flag(string name, string description, string value = "true") => new(name, null, description, CliShape.Flag, value);
}
