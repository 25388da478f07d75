namespace NbdQcow.Config;

/// <summary>One export as declared in configuration (strings, validated later).</summary>
public sealed class ExportOptions
{
    public string? Name { get; set; }
    public string? Path { get; set; }
    public string? Description { get; set; }
    public string? Cache { get; set; }
    public string? ReadOnly { get; set; }
    /// <summary>Milliseconds, or "off".</summary>
    public string? MaxDirtyAge { get; set; }
    public string? Journal { get; set; }
    public string? Snapshot { get; set; }
    /// <summary>"raw" or "qcow2"; empty probes the file.</summary>
    public string? Format { get; set; }
    /// <summary>Image locking against qemu and other nbdqcow processes: "on" (default), "off", or "force-share" (read-only exports).</summary>
    public string? Locking { get; set; }
    /// <summary>Start inactive (a migration destination): "true" or "false"; needs a control socket to activate.</summary>
    public string? Inactive { get; set; }
    /// <summary>Create the image with this size (e.g. 10G) when the file is missing.</summary>
    public string? Create { get; set; }
    /// <summary>Persistent dirty bitmaps of the image offered as qemu:dirty-bitmap:NAME meta contexts.</summary>
    public List<string>? Bitmaps { get; set; }
    /// <summary>report (default), enospc, retry or stop.</summary>
    public string? WriteErrorPolicy { get; set; }
    /// <summary>report (default) or retry.</summary>
    public string? ReadErrorPolicy { get; set; }
    /// <summary>Milliseconds a held request is retried before its error is reported.</summary>
    public string? ErrorRetryTimeout { get; set; }
    /// <summary>
    /// Folder the image's backing files and external data file must lie in (or under) after symlinks; "/" allows any.
    /// Default: the server-wide BackingRoot, else the folder of the image itself.
    /// </summary>
    public string? BackingRoot { get; set; }
    /// <summary>File whose whole content is the secret of a LUKS-encrypted qcow2 image.</summary>
    public string? KeyFile { get; set; }
}
