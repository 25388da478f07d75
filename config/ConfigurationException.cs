namespace NbdQcow.Config;

/// <summary>Invalid configuration: every problem found, each naming its key and what is allowed.</summary>
public sealed class ConfigurationException : Exception
{
    public ConfigurationException(IReadOnlyList<string> problems)
        : base("invalid configuration:\n  " + string.Join("\n  ", problems)) => Problems = problems;

    public IReadOnlyList<string> Problems { get; }
}
