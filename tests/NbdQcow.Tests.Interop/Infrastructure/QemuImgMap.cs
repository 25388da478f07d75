using System.Text.Json;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>Runs and parses `qemu-img map --output=json`, and reduces maps to comparable allocation runs.</summary>
public static class QemuImgMap
{
    public static async Task<IReadOnlyList<MapExtent>> ReadAsync(string target, string? format = null)
    {
        var arguments = new List<string> { "map", "--output=json" };
        if (format is not null)
        {
            arguments.AddRange(["-f", format]);
        }

        arguments.Add(target);
        var result = (await ToolRunner.RunAsync("qemu-img", arguments)).EnsureSuccess();
        return Parse(result.Stdout);
    }

    public static IReadOnlyList<MapExtent> Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        var extents = new List<MapExtent>();
        foreach (var entry in document.RootElement.EnumerateArray())
        {
            extents.Add(new MapExtent(entry.GetProperty("start").GetInt64(), entry.GetProperty("length").GetInt64(),
                entry.GetProperty("data").GetBoolean(), entry.GetProperty("zero").GetBoolean()));
        }

        return extents;
    }

    /// <summary>Ranges reported as data, with adjacent ranges merged (so different extent splits compare equal).</summary>
    public static IReadOnlyList<(long Start, long End)> DataRuns(IEnumerable<MapExtent> extents)
    {
        var runs = new List<(long Start, long End)>();
        foreach (var extent in extents.Where(e => e.Data).OrderBy(e => e.Start))
        {
            if (runs.Count > 0 && runs[^1].End == extent.Start)
            {
                runs[^1] = (runs[^1].Start, extent.End);
            }
            else
            {
                runs.Add((extent.Start, extent.End));
            }
        }

        return runs;
    }

    public static string Format(IEnumerable<(long Start, long End)> runs) =>
        string.Join(", ", runs.Select(r => $"[{r.Start}, {r.End})"));
}
