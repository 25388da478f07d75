namespace NbdQcow.Config.Settings;

/// <summary>Where a setting's key lives in the configuration.</summary>
public enum SettingScope
{
    /// <summary>Top level: <c>Key</c>, <c>NBDQCOW__KEY</c>; a command-line option sets it server-wide.</summary>
    Server,
    /// <summary>Per export: <c>Exports:N:Key</c>, <c>NBDQCOW__EXPORTS__N__KEY</c>; a command-line option sets it for the IMAGE's export, or for every export.</summary>
    Export,
    /// <summary>Both: the top-level value is every export's default; a command-line option sets it per export.</summary>
    ServerAndExport,
}
