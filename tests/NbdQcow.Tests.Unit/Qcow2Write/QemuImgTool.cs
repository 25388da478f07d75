
namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>Runs the real qemu-img (bounded by a timeout) to check and compare images the engine wrote.</summary>
public static class QemuImgTool
{
    public static (int ExitCode, string Output) Run(params string[] args)
    {
        var result = ToolRunner.Run("qemu-img", args);
        return (result.ExitCode, result.Stdout + result.Stderr);
    }

    /// <summary>Asserts `qemu-img check` finds no errors and no leaks.</summary>
    public static void AssertClean(string image)
    {
        var (code, output) = Run("check", "-f", "qcow2", image);
        Assert.True(code == 0, $"qemu-img check {image} exited {code}:\n{output}");
        Assert.DoesNotContain("leaked", output);
        Assert.DoesNotContain("ERROR", output);
        // The project's own check must agree.
        var own = NbdQcow.Image.Qcow2.Check.Qcow2Checker.Check(image);
        Assert.True(own.IsClean, $"nbdqcow check {image}: {own.FatalError} {string.Join("\n", own.CorruptionMessages.Concat(own.LeakMessages))}");
    }

    /// <summary>Asserts `qemu-img compare` calls the qcow2 image identical to the raw reference.</summary>
    public static void AssertSameAs(string image, string rawReference)
    {
        var (code, output) = Run("compare", "-f", "qcow2", "-F", "raw", image, rawReference);
        Assert.True(code == 0, $"qemu-img compare {image} {rawReference} exited {code}:\n{output}");
    }

    public static void Create(string image, string size, params string[] options)
    {
        var args = new List<string> { "create", "-q", "-f", "qcow2" };
        if (options.Length > 0) { args.Add("-o"); args.Add(string.Join(',', options)); }
        args.Add(image);
        args.Add(size);
        var (code, output) = Run([.. args]);
        Assert.True(code == 0, $"qemu-img create failed: {output}");
    }
}
