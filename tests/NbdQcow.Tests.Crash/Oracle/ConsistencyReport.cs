namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>Outcome of a metadata check of a crashed image: what is corrupt (null = nothing) and how many clusters leaked.</summary>
public readonly record struct ConsistencyReport(string? Corruption, int LeakedClusters = 0);
