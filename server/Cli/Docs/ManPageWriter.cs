using System.CommandLine;
using System.Text;

namespace NbdQcow.Server.Cli.Docs;

/// <summary>
/// Writes nbdqcow(1) in roff (man(7) macros) from the command definitions: every subcommand with its arguments and
/// options as the parser knows them, plus the sections no parser holds (exit status, environment, see also).
/// `nbdqcow docs man` prints it; scripts/install-docs.sh installs it.
/// </summary>
internal static class ManPageWriter
{
    public static void Write(RootCommand root, TextWriter output, string version, DateOnly date)
    {
        output.WriteLine($".TH NBDQCOW 1 \"{date:yyyy-MM-dd}\" \"nbdqcow {Escape(version)}\" \"User Commands\"");
        output.WriteLine(".SH NAME");
        output.WriteLine($"nbdqcow \\- {Escape(Summary(root))}");
        output.WriteLine(".SH SYNOPSIS");
        foreach (var command in CommandTree.VisibleSubcommands(root))
        {
            output.WriteLine(".br");
            output.WriteLine($".B nbdqcow {Escape(command.Name)}");
            output.WriteLine($"{Escape(CommandTree.ArgumentSynopsis(command))} [\\fIOPTIONS\\fR]");
        }
        output.WriteLine(".SH DESCRIPTION");
        output.WriteLine("nbdqcow serves qcow2 and raw images to NBD clients (the Linux kernel through nbd-client, qemu, libnbd tools, fio)");
        output.WriteLine("over TCP or Unix sockets, with qemu's cache modes and an ordered metadata flush, and ships the tools an operator");
        output.WriteLine("needs after a crash: check, repair, recover, info and create.");
        output.WriteLine(".SH COMMANDS");
        foreach (var command in CommandTree.VisibleSubcommands(root))
        {
            output.WriteLine($".SS \"nbdqcow {Escape(command.Name)} {Escape(CommandTree.ArgumentSynopsis(command))}\"");
            output.WriteLine(Paragraphs(command.Description));
            foreach (var argument in command.Arguments.Where(a => !a.Hidden))
            {
                output.WriteLine(".TP");
                output.WriteLine($".I {Escape(argument.Name)}");
                output.WriteLine(Paragraphs(argument.Description));
            }
            foreach (var option in CommandTree.VisibleOptions(command))
            {
                output.WriteLine(".TP");
                output.WriteLine(OptionTerm(option));
                output.WriteLine(Paragraphs(option.Description));
            }
        }
        output.WriteLine(".SH GLOBAL OPTIONS");
        foreach (var option in CommandTree.VisibleOptions(root))
        {
            output.WriteLine(".TP");
            output.WriteLine(OptionTerm(option));
            output.WriteLine(Paragraphs(option.Description));
        }
        output.WriteLine(".SH EXIT STATUS");
        output.WriteLine(".TP\n.B 0\nSuccess (serve: stopped by SIGTERM or SIGINT after flushing everything in order).");
        output.WriteLine(".TP\n.B 1\nAn error: a file, image, address or storage problem, named on standard error.");
        output.WriteLine(".TP\n.B 2\nA usage mistake or invalid configuration; the message says what is wrong and where help is.");
        output.WriteLine(".PP\ncheck exits as qemu-img check does: 2 when corruptions remain, 3 when only leaks remain.");
        output.WriteLine(".SH ENVIRONMENT");
        output.WriteLine(".TP\n.B NBDQCOW__\\fIKEY\\fR\nAny configuration key, as with --config (NBDQCOW__LISTEN, NBDQCOW__EXPORTS__0__PATH).");
        output.WriteLine(".TP\n.B LISTEN_FDS\\fR, \\fBLISTEN_PID\nSocket activation: serve listens on the sockets systemd passes when neither --listen nor --socket is given.");
        output.WriteLine(".TP\n.B NOTIFY_SOCKET\nserve sends READY=1 once listening and STOPPING=1 at shutdown.");
        output.WriteLine(".SH SEE ALSO");
        output.WriteLine(".BR qemu-nbd (8),");
        output.WriteLine(".BR qemu-img (1),");
        output.WriteLine(".BR nbd-client (8),");
        output.WriteLine(".BR nbdinfo (1)");
    }

    /// <summary>The root description without its leading "nbdqcow: " (the NAME line names the program already).</summary>
    private static string Summary(RootCommand root)
    {
        string text = root.Description ?? "";
        return text.StartsWith("nbdqcow: ", StringComparison.Ordinal) ? text["nbdqcow: ".Length..] : text;
    }

    private static string OptionTerm(Option option)
    {
        var spellings = string.Join(", ", CommandTree.Spellings(option).Select(s => $"\\fB{Escape(s)}\\fR"));
        return CommandTree.TakesValue(option) ? $"{spellings} \\fI{Escape(option.HelpName ?? "VALUE")}\\fR" : spellings;
    }

    /// <summary>Description text as roff: escaped, lines kept apart, no line starting with a control character.</summary>
    private static string Paragraphs(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return "";
        var result = new StringBuilder();
        foreach (var line in text.Split('\n'))
        {
            if (result.Length > 0) result.Append("\n.br\n");
            result.Append(Escape(line.TrimEnd()));
        }
        return result.ToString();
    }

    /// <summary>
    /// Backslashes and hyphens escaped; a leading '.' or '\'' protected with the zero-width \&amp; so roff never reads
    /// text as a request.
    /// </summary>
    public static string Escape(string text)
    {
        var escaped = text.Replace("\\", "\\e").Replace("-", "\\-");
        return escaped.StartsWith('.') || escaped.StartsWith('\'') ? "\\&" + escaped : escaped;
    }
}
