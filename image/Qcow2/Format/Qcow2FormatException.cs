namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// A qcow2 image whose metadata is invalid or unsupported. The message names the field and its value,
/// so an operator can see at once what is wrong with the file.
/// </summary>
public sealed class Qcow2FormatException : ImageFormatException
{
    public Qcow2FormatException(string field, object? value, string problem)
        : base($"qcow2 {field} = {FormatValue(value)}: {problem}")
    {
        Field = field;
        Value = value;
    }

    public string Field { get; }

    public object? Value { get; }

    private static string FormatValue(object? value) => value switch
    {
        null => "(none)",
        long l when l >= 4096 => $"{l} (0x{l:x})",
        ulong u when u >= 4096 => $"{u} (0x{u:x})",
        string s => $"\"{s}\"",
        _ => value.ToString() ?? "",
    };
}
