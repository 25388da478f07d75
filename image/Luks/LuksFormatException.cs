namespace NbdQcow.Image.Luks;

/// <summary>A LUKS header that is malformed or uses what nbdqcow cannot decrypt; the message names the field.</summary>
public sealed class LuksFormatException(string field, string problem) : Exception($"LUKS {field}: {problem}")
{
    public string Field { get; } = field;
}
