namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>fio's nbd engine (libnbd) as a verifying write workload.</summary>
public static class FioWorkload
{
    /// <summary>
    /// Two jobs (two connections), each 16 MiB of random writes at depth 16 in its own half of the first 32 MiB,
    /// then a read that verifies every block's CRC32C. Fails with fio's and the server's output.
    /// </summary>
    public static async Task RunVerifiedRandomWritesAsync(string uri, ServerProcess server, string blockSizeArgument = "--bs=4k")
    {
        var result = await ToolRunner.RunAsync("fio", [
            "--name=nbdwrite", "--ioengine=nbd", $"--uri={uri}", "--rw=randwrite", blockSizeArgument, "--size=16M",
            "--iodepth=16", "--numjobs=2", "--offset_increment=16M", "--verify=crc32c", "--do_verify=1",
            "--verify_fatal=1", "--randrepeat=1", "--randseed=4242", "--group_reporting",
        ], TimeSpan.FromSeconds(180));
        result.EnsureSuccess(server.Describe());
        Assert.DoesNotContain("verify failed", result.Stdout + result.Stderr);
        Assert.Contains("err= 0", result.Stdout);
    }
}
