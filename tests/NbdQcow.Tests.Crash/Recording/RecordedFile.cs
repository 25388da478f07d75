namespace NbdQcow.Tests.Crash.Recording;

/// <summary>A host file seen by the recording factory, with its content when first opened (durable by assumption).</summary>
public sealed record RecordedFile(int Id, string Path, byte[]? InitialContent);
