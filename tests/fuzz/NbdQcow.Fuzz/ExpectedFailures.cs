using NbdQcow.Image;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Recover;

namespace NbdQcow.Fuzz;

/// <summary>
/// The documented ways the image code refuses bad input: a format error naming the field, a block error
/// (EIO and friends) the server maps to an NBD error, a recovery input error, an encrypted image without its key, a missing backing or data file,
/// the harness's own full disk. Everything else escaping a target is a bug.
/// </summary>
public static class ExpectedFailures
{
    /// <summary>NBDQCOW_FUZZ_VERBOSE=1 prints each refusal in replay mode, to see how far seeds get.</summary>
    private static readonly bool Verbose = Environment.GetEnvironmentVariable("NBDQCOW_FUZZ_VERBOSE") == "1";

    public static bool IsBadInputOutcome(Exception exception)
    {
        bool expected = Classify(exception);
        if (Verbose) Console.Error.WriteLine($"  refused ({(expected ? "expected" : "UNEXPECTED")}): {exception.GetType().Name}: {exception.Message}");
        return expected;
    }

    private static bool Classify(Exception exception) => exception switch
    {
        ImageFormatException or BlockDeviceException or RecoveryInputException or MemoryFileFullException => true,
        // An encrypted image opened without its key: refused by name before any data is read.
        NbdQcow.Image.Luks.EncryptionKeyException => true,
        FileNotFoundException or DirectoryNotFoundException => true,
        AggregateException aggregate => aggregate.InnerExceptions.All(Classify),
        _ => false,
    };
}
