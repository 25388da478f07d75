using System.Globalization;
using System.Text;
using System.Xml;

namespace NbdQcow.Bench;

/// <summary>
/// Writes a horizontal bar chart as SVG: one group of bars per workload, one bar per cache mode, length
/// relative to the group's best, the figures written beside each bar. SVG is plain text, so the chart needs
/// no graphics package, native library or font on the machine; any browser or image viewer shows it.
/// </summary>
internal static class BenchChartWriter
{
    public sealed record Bar(string Label, double Value, string Text);

    public sealed record Group(string Title, IReadOnlyList<Bar> Bars);

    private const int Margin = 16;
    private const int FontSize = 13;
    private const int TitleHeight = 32;
    private const int GroupTitleHeight = 24;
    private const int LabelWidth = 120;
    private const int BarArea = 420;
    private const int TextWidth = 420;
    private const int BarHeight = 18;
    private const int BarGap = 6;
    private const int GroupGap = 14;

    private static readonly string[] Palette = ["#2b7bba", "#e08a2b", "#3aa05a", "#c03c3c", "#8a5cc0", "#707070"];

    public static void Write(string path, string title, IReadOnlyList<Group> groups)
    {
        var width = Margin * 2 + LabelWidth + BarArea + TextWidth;
        var height = Margin * 2 + TitleHeight;
        foreach (var group in groups)
        {
            height += GroupTitleHeight + group.Bars.Count * (BarHeight + BarGap) + GroupGap;
        }

        var settings = new XmlWriterSettings { Indent = true, Encoding = new UTF8Encoding(false) };
        using var xml = XmlWriter.Create(path, settings);
        xml.WriteStartDocument();
        xml.WriteStartElement("svg", "http://www.w3.org/2000/svg");
        Attribute(xml, "width", width);
        Attribute(xml, "height", height);
        xml.WriteAttributeString("viewBox", string.Create(CultureInfo.InvariantCulture, $"0 0 {width} {height}"));
        xml.WriteAttributeString("font-family", "sans-serif");
        Attribute(xml, "font-size", FontSize);
        Rect(xml, 0, 0, width, height, "#ffffff");
        Text(xml, Margin, Margin + FontSize + 2, title, "#000000", bold: true);

        var y = Margin + TitleHeight;
        foreach (var group in groups)
        {
            Text(xml, Margin, y + FontSize, group.Title, "#000000", bold: true);
            y += GroupTitleHeight;
            var max = 0.0;
            foreach (var bar in group.Bars)
            {
                max = Math.Max(max, bar.Value);
            }
            var barX = Margin + LabelWidth;
            for (var i = 0; i < group.Bars.Count; i++)
            {
                var bar = group.Bars[i];
                var baseline = y + BarHeight - 4;
                Text(xml, Margin, baseline, bar.Label, "#303030", bold: false);
                var length = max > 0 ? Math.Round(bar.Value / max * BarArea, 1) : 0;
                Rect(xml, barX, y, Math.Max(length, 1), BarHeight, Palette[i % Palette.Length]);
                Text(xml, barX + BarArea + 8, baseline, bar.Text, "#303030", bold: false);
                y += BarHeight + BarGap;
            }
            y += GroupGap;
        }
        xml.WriteEndElement();
        xml.WriteEndDocument();
    }

    private static void Rect(XmlWriter xml, double x, double y, double width, double height, string fill)
    {
        xml.WriteStartElement("rect");
        Attribute(xml, "x", x);
        Attribute(xml, "y", y);
        Attribute(xml, "width", width);
        Attribute(xml, "height", height);
        xml.WriteAttributeString("fill", fill);
        xml.WriteEndElement();
    }

    private static void Text(XmlWriter xml, double x, double y, string text, string fill, bool bold)
    {
        xml.WriteStartElement("text");
        Attribute(xml, "x", x);
        Attribute(xml, "y", y);
        xml.WriteAttributeString("fill", fill);
        if (bold)
        {
            xml.WriteAttributeString("font-weight", "bold");
        }
        xml.WriteString(text);
        xml.WriteEndElement();
    }

    private static void Attribute(XmlWriter xml, string name, double value)
        => xml.WriteAttributeString(name, value.ToString(CultureInfo.InvariantCulture));
}
