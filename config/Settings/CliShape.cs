namespace NbdQcow.Config.Settings;

/// <summary>How a command-line option spells a setting's value.</summary>
public enum CliShape
{
    /// <summary><c>--option VALUE</c>.</summary>
    Value,
    /// <summary><c>--option</c> alone, setting the key to <see cref="CliSpelling.FlagValue"/>.</summary>
    Flag,
    /// <summary><c>--option VALUE</c>, repeatable: the key becomes a list.</summary>
    List,
}
