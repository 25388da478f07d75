namespace NbdQcow.Config.Settings;

/// <summary>
/// A setting the validator checks together with others (Listen with Socket, the TLS group, an export's Name and
/// Path, BackingRoot's two levels): declared here for its key, spellings and README row; its value is read by
/// <see cref="ServerSettingsValidator"/> itself.
/// </summary>
public sealed class CheckedTogetherSetting(string key, SettingScope scope, string meaning, string allowed, params CliSpelling[] cli)
    : Setting(key, scope, meaning, allowed, cli)
{
    internal override object Apply(object target, string key, IReadOnlyList<string>? values, List<string> problems) => target;
}
