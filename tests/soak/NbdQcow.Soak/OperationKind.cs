namespace NbdQcow.Soak;

public enum OperationKind
{
    Write,
    Zero,
    Trim,
}
