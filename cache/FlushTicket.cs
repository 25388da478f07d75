namespace NbdQcow.Cache;

/// <summary>What a durable flush covers: changes counted up to <see cref="ChangeSequence"/>, at <see cref="Timestamp"/>.</summary>
public readonly record struct FlushTicket(long ChangeSequence, long Timestamp);
