namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>A fixed sequence of requests against a device of <see cref="DeviceSize"/> bytes.</summary>
public sealed record Workload(string Name, long DeviceSize, IReadOnlyList<WorkloadStep> Steps);
