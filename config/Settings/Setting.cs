namespace NbdQcow.Config.Settings;

/// <summary>
/// One setting, declared once in <see cref="ServeSettings"/>: its configuration key (which also gives the
/// NBDQCOW__ environment variable), scope, command-line spellings, README row, and how its text is checked and
/// stored. The loader, the known-key check, the `serve` options and the README table are derived from these.
/// </summary>
public abstract class Setting
{
    protected Setting(string key, SettingScope scope, string meaning, string allowed, IReadOnlyList<CliSpelling> cli)
    {
        Key = key;
        Scope = scope;
        Meaning = meaning;
        Allowed = allowed;
        Cli = cli;
    }

    /// <summary>The configuration key: "Cache" (JSON), NBDQCOW__EXPORTS__0__CACHE (environment).</summary>
    public string Key { get; }

    public SettingScope Scope { get; }

    /// <summary>What it is, for the README's key table.</summary>
    public string Meaning { get; }

    /// <summary>Allowed values and the default in parentheses, for the README's key table.</summary>
    public string Allowed { get; }

    public IReadOnlyList<CliSpelling> Cli { get; }

    /// <summary>A list (JSON array, indexed keys Key:0, Key:1 ...) rather than one value.</summary>
    public virtual bool IsList => false;

    public bool AtServerLevel => Scope is SettingScope.Server or SettingScope.ServerAndExport;

    public bool AtExportLevel => Scope is SettingScope.Export or SettingScope.ServerAndExport;

    /// <summary>
    /// Checks <paramref name="values"/> (null when the key is not set; one entry unless a list) and stores the result in
    /// <paramref name="target"/>; a bad value adds one problem "KEY: ..." and leaves the target as it was. Settings the
    /// validator checks together with others (Listen, the TLS group, Name, Path) return the target unchanged.
    /// </summary>
    internal abstract object Apply(object target, string key, IReadOnlyList<string>? values, List<string> problems);

    public override string ToString() => Key;
}
