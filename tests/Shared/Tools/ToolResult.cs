using System.Text;

namespace NbdQcow.Tests.Shared;

/// <summary>What one run of an external tool produced.</summary>
public sealed record ToolResult(string CommandLine, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>
    /// Fails the test, showing the command, exit code and all output, unless the tool exited 0.
    /// <paramref name="context"/> (e.g. the server's captured output) is appended to the message.
    /// </summary>
    public ToolResult EnsureSuccess(string? context = null)
    {
        if (ExitCode != 0)
        {
            Assert.Fail(Describe("expected exit code 0") + (context is null ? "" : "\n" + context));
        }

        return this;
    }

    /// <summary>Fails the test unless the tool exited non-zero (a refusal the test expects).</summary>
    public ToolResult EnsureFailure(string? context = null)
    {
        if (ExitCode == 0)
        {
            Assert.Fail(Describe("expected a non-zero exit code") + (context is null ? "" : "\n" + context));
        }

        return this;
    }

    public string Describe(string headline)
    {
        var text = new StringBuilder();
        text.AppendLine($"{headline}; got {ExitCode} after {Elapsed.TotalSeconds:F1} s");
        text.AppendLine($"command: {CommandLine}");
        text.AppendLine("--- stdout ---").AppendLine(Stdout.TrimEnd());
        text.AppendLine("--- stderr ---").AppendLine(Stderr.TrimEnd());
        return text.ToString();
    }
}
