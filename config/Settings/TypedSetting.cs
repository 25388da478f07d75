namespace NbdQcow.Config.Settings;

/// <summary>
/// A setting whose text becomes a <typeparamref name="TValue"/> stored into <typeparamref name="TSettings"/>
/// (<see cref="ServerSettings"/> or <see cref="ExportSettings"/>) by <see cref="Store"/>.
/// </summary>
public sealed class TypedSetting<TSettings, TValue> : Setting where TSettings : class
{
    public TypedSetting(string key, SettingScope scope, string meaning, string allowed, IReadOnlyList<CliSpelling> cli,
        Func<string, SettingParse<TValue>> parse, Func<TSettings, TValue, TSettings> store)
        : base(key, scope, meaning, allowed, cli)
    {
        Parse = parse;
        Store = store;
    }

    /// <summary>The value, or the problem to report after "KEY: " (naming the value and what is allowed).</summary>
    public Func<string, SettingParse<TValue>> Parse { get; }

    /// <summary>The settings with this value set (a `with` expression).</summary>
    public Func<TSettings, TValue, TSettings> Store { get; }

    internal override object Apply(object target, string key, IReadOnlyList<string>? values, List<string> problems)
    {
        if (values is null || target is not TSettings settings || values.Count == 0)
            return target;
        var parsed = Parse(values[0]);
        if (parsed.Problem is { } problem)
        {
            problems.Add($"{key}: {problem}");
            return target;
        }
        return Store(settings, parsed.Value!);
    }
}
