namespace NbdQcow.Image.Luks;

/// <summary>An encrypted image opened without its key, or with a key that opens no keyslot.</summary>
public sealed class EncryptionKeyException(string message) : Exception(message);
