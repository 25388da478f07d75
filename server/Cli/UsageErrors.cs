using System.CommandLine;
using System.CommandLine.Parsing;

namespace NbdQcow.Server.Cli;

/// <summary>
/// Usage mistakes in every command: two lines on stderr, what is wrong and where help is, and exit code 2.
/// An unknown option is named as such (with the closest known spelling), not as the stray value after it.
/// </summary>
internal static class UsageErrors
{
    public const int ExitCode = 2;

    /// <summary>Prints the problem of <paramref name="parseResult"/> when it has one; returns the exit code, or null.</summary>
    public static int? Report(ParseResult parseResult, IReadOnlyList<string> arguments)
    {
        var command = parseResult.CommandResult.Command;
        var known = KnownOptions(parseResult.CommandResult);
        var problem = UnknownOption(command, known, arguments);
        if (problem is null && parseResult.Errors.Count == 0) return null;
        problem ??= parseResult.Errors[0].Message.TrimEnd('.');
        var name = command.Parents.Any() ? $"nbdqcow {command.Name}" : "nbdqcow";
        Console.Error.WriteLine($"{name}: {problem}");
        Console.Error.WriteLine($"Try '{name} --help' for more information.");
        return ExitCode;
    }

    private static Dictionary<string, Option> KnownOptions(CommandResult result)
    {
        var known = new Dictionary<string, Option>(StringComparer.Ordinal);
        for (SymbolResult? current = result; current is not null; current = current.Parent)
        {
            if (current is not CommandResult commandResult) continue;
            foreach (var option in commandResult.Command.Options)
            {
                if (current != result && !option.Recursive) continue;
                known[option.Name] = option;
                foreach (var alias in option.Aliases) known[alias] = option;
            }
        }
        return known;
    }

    /// <summary>The first token after the command's name that looks like an option but is none of its options.</summary>
    private static string? UnknownOption(Command command, Dictionary<string, Option> known, IReadOnlyList<string> arguments)
    {
        var start = 0;
        while (start < arguments.Count && arguments[start] != command.Name) start++;
        for (var i = start + 1; i < arguments.Count; i++)
        {
            var token = arguments[i];
            if (token == "--") break;
            if (token.Length < 2 || token[0] != '-' || char.IsAsciiDigit(token[1])) continue;
            var name = token.Split('=', 2)[0];
            if (known.TryGetValue(name, out var option))
            {
                // The value of an option that takes one may itself start with '-'.
                if (!token.Contains('=') && option.Arity.MaximumNumberOfValues > 0 && option.ValueType != typeof(bool)) i++;
                continue;
            }
            var closest = known.Keys.Where(k => k.StartsWith("--", StringComparison.Ordinal))
                .Select(k => (Name: k, Distance: Distance(name, k))).OrderBy(c => c.Distance).FirstOrDefault();
            var hint = closest.Name is not null && closest.Distance <= 2 ? $" (did you mean '{closest.Name}'?)" : "";
            return $"unrecognized option '{name}'{hint}";
        }
        return null;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
