using System.CommandLine;
using System.Reflection;

namespace NbdQcow.Server.Cli.Docs;

/// <summary>
/// `nbdqcow docs man|bash-completion`: prints the man page or the bash completion script, both made from the
/// command definitions at hand. Hidden from help: it is for packaging (scripts/install-docs.sh), not daily use.
/// </summary>
internal static class DocsCommand
{
    public static Command Create(Func<RootCommand> root)
    {
        var man = new Command("man", "Print the nbdqcow(1) man page (roff).");
        man.SetAction(_ =>
        {
            ManPageWriter.Write(root(), Console.Out, Version, DateOnly.FromDateTime(BuildDate));
            return 0;
        });
        var bash = new Command("bash-completion", "Print the bash completion script.");
        bash.SetAction(_ =>
        {
            BashCompletionWriter.Write(root(), Console.Out);
            return 0;
        });
        var docs = new Command("docs", "Print generated documentation: the man page or the bash completion script.") { Hidden = true };
        docs.Subcommands.Add(man);
        docs.Subcommands.Add(bash);
        return docs;
    }

    private static string Version =>
        typeof(DocsCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0";

    /// <summary>SOURCE_DATE_EPOCH when set (reproducible packages), else today.</summary>
    private static DateTime BuildDate =>
        long.TryParse(Environment.GetEnvironmentVariable("SOURCE_DATE_EPOCH"), out long seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds).UtcDateTime
            : DateTime.UtcNow;
}
