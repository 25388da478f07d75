namespace NbdQcow.Tests.Unit.Raw;

/// <summary>Holds the next fdatasync of a counted host file until <see cref="Release"/>, so a test can pile requests up behind it.</summary>
internal sealed class HeldFirstSync : IDisposable
{
    private readonly ManualResetEventSlim _entered = new();
    private readonly ManualResetEventSlim _release = new();
    private int _first = 1;

    public HeldFirstSync(CountingHostFile file)
    {
        file.BeforeFlush = () =>
        {
            if (Interlocked.Exchange(ref _first, 0) == 0) return;
            _entered.Set();
            Assert.True(_release.Wait(TimeSpan.FromSeconds(30)));
        };
    }

    /// <summary>Returns once the held fdatasync has started.</summary>
    public void WaitUntilHeld() => Assert.True(_entered.Wait(TimeSpan.FromSeconds(30)), "no fdatasync started");

    public void Release() => _release.Set();

    public void Dispose()
    {
        _release.Set();
        _entered.Dispose();
        _release.Dispose();
    }
}
