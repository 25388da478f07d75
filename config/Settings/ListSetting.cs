namespace NbdQcow.Config.Settings;

/// <summary>A setting whose value is a list (JSON array; a repeatable command-line option); each item is checked on its own.</summary>
public sealed class ListSetting<TSettings> : Setting where TSettings : class
{
    public ListSetting(string key, SettingScope scope, string meaning, string allowed, IReadOnlyList<CliSpelling> cli,
        Func<string, IReadOnlyList<string>, string?> checkItem, Func<TSettings, IReadOnlyList<string>, TSettings> store)
        : base(key, scope, meaning, allowed, cli)
    {
        CheckItem = checkItem;
        Store = store;
    }

    /// <summary>The problem with one item given those accepted before it, or null.</summary>
    public Func<string, IReadOnlyList<string>, string?> CheckItem { get; }

    public Func<TSettings, IReadOnlyList<string>, TSettings> Store { get; }

    public override bool IsList => true;

    internal override object Apply(object target, string key, IReadOnlyList<string>? values, List<string> problems)
    {
        if (values is null || target is not TSettings settings)
            return target;
        var accepted = new List<string>();
        foreach (var item in values)
        {
            if (CheckItem(item, accepted) is { } problem)
                problems.Add($"{key}: {problem}");
            else
                accepted.Add(item);
        }
        return Store(settings, accepted);
    }
}
