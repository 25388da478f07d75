using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Cli;

/// <summary>
/// The man page and the bash completion come from the command definitions (`nbdqcow docs ...`): man renders the
/// page without warnings and it lists every command and option help knows; bash completes commands, options and
/// the values of options that name them.
/// </summary>
public sealed class GeneratedDocsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static async Task<ToolResult> RunAsync(params string[] arguments)
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        return (await ToolRunner.RunAsync(RepositoryRoot.Launcher, arguments, Bound)).EnsureSuccess();
    }

    [Fact]
    public async Task ManPageRendersWithoutWarningsAndListsEveryCommandAndServeOption()
    {
        using var folder = new TempDirectory("docs");
        var page = await RunAsync("docs", "man");
        string file = folder.File("nbdqcow.1");
        await File.WriteAllTextAsync(file, page.Stdout);
        var rendered = (await ToolRunner.RunAsync("man", ["--warnings", "-l", file], Bound,
            environment: new Dictionary<string, string> { ["MANWIDTH"] = "100", ["MAN_KEEP_FORMATTING"] = "0" })).EnsureSuccess();
        Assert.True(rendered.Stderr.Trim() == "", rendered.Describe("no roff warnings"));
        // Not on a terminal, man still marks bold and underline by overstriking (c BACKSPACE c): drop the marks.
        string text = System.Text.RegularExpressions.Regex.Replace(rendered.Stdout, ".\b", "").Replace("\u2010", "-").Replace("\u2011", "-").Replace("\u2212", "-");
        foreach (var command in new[] { "serve", "create", "info", "check", "recover", "control" })
            Assert.Contains($"nbdqcow {command}", text);
        Assert.DoesNotContain("nbdqcow docs", text);
        var help = await RunAsync("serve", "--help");
        foreach (var option in help.Stdout.Split(['\n', ' ', ','], StringSplitOptions.RemoveEmptyEntries).Where(w => w.StartsWith("--", StringComparison.Ordinal)).Distinct())
            Assert.True(text.Contains(option, StringComparison.Ordinal), $"the man page lacks {option}, which serve --help shows");
        Assert.Contains("EXIT STATUS", text);
    }

    [Theory]
    [InlineData("nbdqcow se", "serve")]
    [InlineData("nbdqcow serve --ca", "--cache")]
    [InlineData("nbdqcow serve disk.qcow2 --cache ", "directsync none unsafe writeback writethrough")]
    [InlineData("nbdqcow create disk --format ", "qcow2 raw")]
    [InlineData("nbdqcow check disk.qcow2 --repair ", "all leaks")]
    public async Task BashCompletesCommandsOptionsAndNamedValues(string line, string expected)
    {
        using var folder = new TempDirectory("completion");
        var script = await RunAsync("docs", "bash-completion");
        string file = folder.File("nbdqcow.bash");
        await File.WriteAllTextAsync(file, script.Stdout);
        // COMP_WORDS as bash splits the line; a trailing space starts an empty word.
        string words = string.Join(" ", line.Split(' ').Select(w => $"'{w}'"));
        string probe = $"source '{file}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _nbdqcow; " +
                       "printf '%s\\n' \"${COMPREPLY[@]}\" | sort | tr '\\n' ' '";
        var result = (await ToolRunner.RunAsync("bash", ["-c", probe], Bound, workingDirectory: folder.Path)).EnsureSuccess();
        Assert.Equal(expected, result.Stdout.Trim());
    }
}
