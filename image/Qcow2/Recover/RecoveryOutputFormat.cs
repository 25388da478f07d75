namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>Format of the recovered image.</summary>
public enum RecoveryOutputFormat
{
    /// <summary>qcow2 v3 made by <see cref="Qcow2Creator"/>, written through the project's own engine.</summary>
    Qcow2,
    /// <summary>A sparse raw file.</summary>
    Raw,
}
