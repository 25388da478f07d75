using System.CommandLine;
using System.CommandLine.Completions;
using System.CommandLine.Help;

namespace NbdQcow.Server.Cli.Docs;

/// <summary>
/// What the man page and the shell completion read from the command definitions, so neither can drift from the
/// parser: the visible subcommands, their arguments and options, and the values an option takes where it names them.
/// </summary>
internal static class CommandTree
{
    public static IEnumerable<Command> VisibleSubcommands(Command command) => command.Subcommands.Where(c => !c.Hidden);

    /// <summary>The command's visible options, --help last.</summary>
    public static IEnumerable<Option> VisibleOptions(Command command) =>
        command.Options.Where(o => !o.Hidden).OrderBy(o => o is HelpOption or VersionOption ? 1 : 0);

    /// <summary>Every spelling a user types: the name and the dash-prefixed aliases (not "/h" or "-?").</summary>
    public static IEnumerable<string> Spellings(Option option) =>
        new[] { option.Name }.Concat(option.Aliases.Order()).Where(s => s.StartsWith('-') && !s.Contains('?')).Distinct();

    public static bool TakesValue(Option option) => option.Arity.MaximumNumberOfValues > 0 && option.ValueType != typeof(bool);

    /// <summary>
    /// The values the option accepts when it names them: its completion sources, else a HelpName of lower-case words
    /// joined by '|' ("raw|qcow2"; placeholders such as "MS|off" keep only their literal words).
    /// </summary>
    public static IReadOnlyList<string> KnownValues(Option option)
    {
        var completions = option.GetCompletions(CompletionContext.Empty).Select(c => c.Label).ToList();
        if (completions.Count > 0) return completions;
        if (option.HelpName is not { } help || !help.Contains('|')) return [];
        return help.Split('|').Where(word => word.Length > 0 && word.All(ch => char.IsAsciiLetterLower(ch) || char.IsAsciiDigit(ch) || ch == '_' || ch == '-')).ToList();
    }

    /// <summary>"--name VALUE" (or "--name" for a flag), as help and the man page write it.</summary>
    public static string Usage(Option option)
    {
        string spellings = string.Join(", ", Spellings(option));
        return TakesValue(option) ? $"{spellings} {option.HelpName ?? "VALUE"}" : spellings;
    }

    /// <summary>"IMAGE [SIZE]": the arguments as the synopsis writes them.</summary>
    public static string ArgumentSynopsis(Command command) =>
        string.Join(" ", command.Arguments.Where(a => !a.Hidden).Select(a =>
            a.Arity.MinimumNumberOfValues == 0 ? $"[{a.Name}]" : a.Arity.MaximumNumberOfValues > 1 ? $"{a.Name}..." : a.Name));
}
