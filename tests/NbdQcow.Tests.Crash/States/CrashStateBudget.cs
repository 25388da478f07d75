namespace NbdQcow.Tests.Crash.States;

/// <summary>Bounds on how many crash points and states one case explores (keeps the suite repeatable and fast).</summary>
public sealed record CrashStateBudget(int CrashPoints = 10, int RandomTicks = 3, int Prefixes = 5, int RandomSubsets = 4, int TornWrites = 3);
