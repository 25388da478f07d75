namespace NbdQcow.Server.Exports;

/// <summary>The exports a server offers, by name; the default export answers to the empty name.</summary>
public sealed class ExportRegistry : IAsyncDisposable
{
    private readonly Dictionary<string, NbdExport> _byName = new(StringComparer.Ordinal);
    private readonly List<NbdExport> _ordered = [];

    /// <summary>Name of the export served for the empty name "", or null when "" is unknown.</summary>
    public string? DefaultExportName { get; private set; }

    public IReadOnlyList<NbdExport> Exports => _ordered;

    /// <summary>Adds an export; the first one added becomes the default unless one is named explicitly.</summary>
    public void Add(NbdExport export, bool isDefault = false)
    {
        if (export.Name.Length == 0)
        {
            throw new ArgumentException("an export needs a non-empty name (\"\" is the default-export alias)", nameof(export));
        }
        if (!_byName.TryAdd(export.Name, export))
        {
            throw new ArgumentException($"export '{export.Name}' is declared twice", nameof(export));
        }
        _ordered.Add(export);
        if (isDefault || DefaultExportName is null)
        {
            DefaultExportName = export.Name;
        }
    }

    public bool TryGet(string name, out NbdExport export)
    {
        if (name.Length == 0 && DefaultExportName is not null)
        {
            name = DefaultExportName;
        }
        return _byName.TryGetValue(name, out export!);
    }

    /// <summary>Flushes every export (ordered flush in the image layer), then disposes them (images mark themselves clean).</summary>
    public async ValueTask DisposeAsync()
    {
        List<Exception>? errors = null;
        foreach (var export in _ordered)
        {
            Exception? flushError = null;
            try
            {
                if (!export.ReadOnly)
                {
                    await export.Device.FlushAsync().ConfigureAwait(false);
                }
            }
            catch (Exception ex)
            {
                flushError = ex;
                (errors ??= []).Add(new IOException($"flushing export '{export.Name}' at shutdown failed: {ex.Message}", ex));
            }
            try
            {
                await export.Device.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (flushError is null || ex.Message != flushError.Message)
            {
                (errors ??= []).Add(new IOException($"closing export '{export.Name}' failed: {ex.Message}", ex));
            }
            catch
            {
                // The close flushes again and fails for the reason just reported (a full disk): once is enough.
            }
        }
        _ordered.Clear();
        _byName.Clear();
        if (errors is not null)
        {
            throw new AggregateException(errors);
        }
    }
}
