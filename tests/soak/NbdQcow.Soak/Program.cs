namespace NbdQcow.Soak;

/// <summary>`dotnet run --project tests/soak/NbdQcow.Soak -- [--minutes N] ...`: exits 0 when the soak passed, 1 when it failed, 2 on bad usage.</summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        SoakOptions options;
        try
        {
            options = SoakOptions.Parse(args);
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            Console.Error.WriteLine($"soak: {e.Message}");
            return 2;
        }
        return await new SoakRun(options).RunAsync().ConfigureAwait(false);
    }
}
