using System.Globalization;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>A scrape of a Prometheus text endpoint (a plain HTTP GET) and the lookup of one sample in it.</summary>
public sealed class PrometheusText(string text)
{
    public string Text { get; } = text;

    public static async Task<PrometheusText> ScrapeAsync(string url)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return new PrometheusText(await client.GetStringAsync(url));
    }

    /// <summary>The sample of <paramref name="name"/> whose labels include every "key=value" given; null if there is none.</summary>
    public double? Value(string name, params string[] labels)
    {
        foreach (var line in Text.Split('\n'))
        {
            if (line.StartsWith('#') || !(line.StartsWith(name + "{", StringComparison.Ordinal) || line.StartsWith(name + " ", StringComparison.Ordinal)))
            {
                continue;
            }
            var space = line.LastIndexOf(' ');
            var series = line[..space];
            if (labels.All(label => series.Contains(LabelText(label), StringComparison.Ordinal)))
            {
                return double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
            }
        }
        return null;
    }

    private static string LabelText(string label)
    {
        var equals = label.IndexOf('=');
        return $"{label[..equals]}=\"{label[(equals + 1)..]}\"";
    }
}
