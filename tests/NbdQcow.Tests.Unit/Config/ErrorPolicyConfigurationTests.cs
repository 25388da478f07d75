using NbdQcow.Config;

namespace NbdQcow.Tests.Unit.Config;

public sealed class ErrorPolicyConfigurationTests : IDisposable
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("nbdqcow-config-test-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void Error_policies_default_to_report_with_a_60_second_retry_timeout()
    {
        var export = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2" }, NoEnvironment).Exports[0];
        Assert.Equal((WriteErrorPolicy.Report, ReadErrorPolicy.Report, TimeSpan.FromSeconds(60)),
            (export.WriteErrorPolicy, export.ReadErrorPolicy, export.ErrorRetryTimeout));
    }

    [Theory]
    [InlineData("report", WriteErrorPolicy.Report)]
    [InlineData("enospc", WriteErrorPolicy.Enospc)]
    [InlineData("retry", WriteErrorPolicy.Retry)]
    [InlineData("STOP", WriteErrorPolicy.Stop)]
    public void Werror_from_the_command_line_sets_the_write_policy(string text, WriteErrorPolicy expected)
    {
        var export = ServerConfigurationLoader.Load(null, new ServeOverrides
        {
            ImagePath = "a.qcow2",
            ["WriteErrorPolicy"] = text,
            ["ReadErrorPolicy"] = "retry",
            ["ErrorRetryTimeout"] = "2500",
        }, NoEnvironment).Exports[0];
        Assert.Equal((expected, ReadErrorPolicy.Retry, TimeSpan.FromMilliseconds(2500)),
            (export.WriteErrorPolicy, export.ReadErrorPolicy, export.ErrorRetryTimeout));
    }

    [Fact]
    public void Config_file_keys_set_the_policies_per_export()
    {
        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """
            { "Exports": [
              { "Name": "a", "Path": "/images/a.qcow2", "WriteErrorPolicy": "enospc", "ErrorRetryTimeout": "30000" },
              { "Name": "b", "Path": "/images/b.raw", "ReadErrorPolicy": "retry" } ] }
            """);
        var exports = ServerConfigurationLoader.Load(path, new ServeOverrides(), NoEnvironment).Exports;
        Assert.Equal((WriteErrorPolicy.Enospc, ReadErrorPolicy.Report, TimeSpan.FromSeconds(30)),
            (exports[0].WriteErrorPolicy, exports[0].ReadErrorPolicy, exports[0].ErrorRetryTimeout));
        Assert.Equal((WriteErrorPolicy.Report, ReadErrorPolicy.Retry), (exports[1].WriteErrorPolicy, exports[1].ReadErrorPolicy));
    }

    [Theory]
    [InlineData("ignore", null, null, "WriteErrorPolicy: 'ignore' is not allowed; allowed: report, enospc, retry, stop")]
    [InlineData("1", null, null, "WriteErrorPolicy: '1' is not allowed")]
    [InlineData(null, "stop", null, "ReadErrorPolicy: 'stop' is not allowed; allowed: report, retry")]
    [InlineData(null, null, "50", "ErrorRetryTimeout: '50' is not allowed; allowed: milliseconds from 100 to 86400000")]
    [InlineData(null, null, "soon", "ErrorRetryTimeout: 'soon' is not allowed")]
    public void Bad_policy_values_are_refused_naming_the_key_and_what_is_allowed(string? werror, string? rerror, string? timeout, string message)
    {
        var refusal = Assert.Throws<ConfigurationException>(() => ServerConfigurationLoader.Load(null, new ServeOverrides
        {
            ImagePath = "a.qcow2",
            ["WriteErrorPolicy"] = werror,
            ["ReadErrorPolicy"] = rerror,
            ["ErrorRetryTimeout"] = timeout,
        }, NoEnvironment));
        Assert.Contains(message, refusal.Message);
    }
}
