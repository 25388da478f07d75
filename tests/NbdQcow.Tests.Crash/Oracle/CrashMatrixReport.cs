using System.Text;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>The crash table (mode x workload), collected across tests and written to a file beside the test binaries.</summary>
public static class CrashMatrixReport
{
    private static readonly List<CrashCaseResult> Rows = [];

    public static string FilePath => Path.Combine(AppContext.BaseDirectory, "crash-matrix.txt");

    public static void Add(IEnumerable<CrashCaseResult> rows)
    {
        lock (Rows)
        {
            Rows.AddRange(rows);
            File.WriteAllText(FilePath, Format(Rows));
        }
    }

    public static string Format(IEnumerable<CrashCaseResult> rows)
    {
        var text = new StringBuilder();
        text.AppendLine($"{"format",-14} {"mode",-20} {"workload",-26} {"points",6} {"states",6} {"unique",6} {"corrupt",7} {"violations",10} {"leaky",6} {"unflushed writes lost",22} {"seconds",7}");
        foreach (var r in rows.OrderBy(r => r.Format).ThenBy(r => r.Mode).ThenBy(r => r.Workload))
            text.AppendLine($"{r.Format,-14} {r.Mode,-20} {r.Workload,-26} {r.CrashPoints,6} {r.StatesChecked,6} {r.StatesChecked - r.DuplicateStates,6} {r.Corruptions,7} {r.Violations,10} {r.StatesWithLeaks,6} {r.LostText,22} {r.Elapsed.TotalSeconds,7:0.0}");
        return text.ToString();
    }
}
