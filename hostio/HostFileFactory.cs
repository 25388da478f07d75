namespace NbdQcow.HostIo;

/// <summary>Opens host files; tests substitute recording or fault-injecting files through this.</summary>
public delegate IHostFile HostFileFactory(string path, HostFileOptions options);
