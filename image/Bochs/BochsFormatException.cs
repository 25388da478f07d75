namespace NbdQcow.Image.Bochs;

/// <summary>A Bochs image whose header or catalog is invalid; the message names the field and its value.</summary>
public sealed class BochsFormatException(string field, object value, string problem)
    : ImageFormatException($"bochs {field} = {value}: {problem}");
