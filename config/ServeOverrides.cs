using NbdQcow.Config.Settings;

namespace NbdQcow.Config;

/// <summary>
/// What `nbdqcow serve` was given on its command line. With an IMAGE, the per-export settings describe that
/// image's export (added after those of the config file); without one they override every configured export.
/// Settings are held by their configuration key (<see cref="ServeSettings"/>): <c>overrides["Cache"] = "none"</c>.
/// A copy made with <c>with</c> shares these values (it is how the command line adds ImagePath after parsing them).
/// </summary>
public sealed record ServeOverrides
{
    private readonly Dictionary<string, string> _values = new(StringComparer.OrdinalIgnoreCase);

    public string? ImagePath { get; init; }

    /// <summary>The service manager handed over listening sockets: no default listen address is added.</summary>
    public bool SocketActivated { get; init; }

    /// <summary>--export NAME: the IMAGE's export name, or without IMAGE the default export.</summary>
    public string? ExportName { get; init; }

    /// <summary>A setting's value by its key, or null when the command line did not give it.</summary>
    public string? this[string key]
    {
        get => _values.GetValueOrDefault(key);
        init => Set(key, value);
    }

    /// <summary>List settings' items (Bitmaps) by key: <c>Lists = { ["Bitmaps"] = ["daily"] }</c>.</summary>
    public Dictionary<string, IReadOnlyList<string>> Lists { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>A list setting's items, or null when none was given.</summary>
    public IReadOnlyList<string>? List(string key) => Lists.GetValueOrDefault(key);

    /// <summary>Sets a value (null removes it); an unknown key is a programming error.</summary>
    public void Set(string key, string? value)
    {
        _ = ServeSettings.Find(key) ?? throw new ArgumentException($"no setting '{key}'", nameof(key));
        if (value is null) _values.Remove(key);
        else _values[key] = value;
    }

    /// <summary>Sets a list setting's items (null or empty removes them).</summary>
    public void SetList(string key, IReadOnlyList<string>? items)
    {
        _ = ServeSettings.Find(key) ?? throw new ArgumentException($"no setting '{key}'", nameof(key));
        if (items is null || items.Count == 0) Lists.Remove(key);
        else Lists[key] = items;
    }
}
