using System.Text;

namespace NbdQcow.Server.Cli;

/// <summary>
/// Where the secret of an encrypted image comes from: a key file (its whole content, as qemu's
/// --object secret,file=), else the NBDQCOW_KEY environment variable. Never a command-line argument, which other
/// users can read in /proc.
/// </summary>
public static class EncryptionSecret
{
    public const string EnvironmentVariable = "NBDQCOW_KEY";

    /// <summary>The secret, or null when neither a key file nor the variable gives one.</summary>
    public static byte[]? Read(string? keyFile)
    {
        if (keyFile is not null)
        {
            byte[] secret;
            try
            {
                secret = File.ReadAllBytes(keyFile);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"key file {FileErrorText.Describe(keyFile, ex)}", ex);
            }
            return secret.Length > 0 ? secret : throw new IOException($"key file {keyFile} is empty");
        }
        return Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } text ? Encoding.UTF8.GetBytes(text) : null;
    }
}
