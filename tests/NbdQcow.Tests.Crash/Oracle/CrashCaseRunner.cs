using Microsoft.Extensions.Time.Testing;
using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Tests.Crash.Recording;
using NbdQcow.Tests.Crash.States;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// Runs one crash case end to end: create an image, drive the workload through ImageOpener with a recording
/// host file factory and a fake clock, then for each generated crash state materialise the files, check
/// consistency, open them with our engine, read the whole device and hand it to the durability oracle.
/// </summary>
public static class CrashCaseRunner
{
    public static async Task<CrashCaseResult> RunAsync(ICrashImageFormat format, CrashModeConfig config, Workload workload,
        CrashStateBudget budget, int seed, string workFolder, Func<IBlockDevice, IBlockDevice>? wrapDevice = null,
        Func<ImageOpenOptions, ImageOpenOptions>? adjustOptions = null, bool toleratesErrors = false, AioEngine aio = AioEngine.Threads)
    {
        var result = new CrashCaseResult { Format = format.Name, Mode = config.Name, Workload = workload.Name };
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        var caseFolder = Path.Combine(workFolder, $"{format.Name}-{config.Mode.ToCliName()}-{aio.ToCliName()}-{(config.MaxDirtyAge is null ? "noage" : "age")}-{workload.Name}");
        Directory.CreateDirectory(caseFolder);
        var imagePath = Path.Combine(caseFolder, "disk.img");
        format.Create(imagePath, workload.DeviceSize);

        var log = new HostFileLog();
        var engine = HostIoEngine.Create(aio);
        Assert.Equal(aio, engine.Effective);
        var factory = new RecordingHostFileFactory(log, engine.Factory);
        var time = new FakeTimeProvider();
        var backgroundErrors = new List<Exception>();
        WorkloadRun run;
        var options = new ImageOpenOptions
        {
            CacheMode = config.Mode,
            MaxDirtyAge = config.MaxDirtyAge,
            TimeProvider = time,
            HostFileFactory = factory.Open,
            BackgroundError = e => { lock (backgroundErrors) backgroundErrors.Add(e); },
            EncryptionKey = format.EncryptionKey,
        };
        var opened = ImageOpener.Open(imagePath, adjustOptions is null ? options : adjustOptions(options));
        // Self-tests wrap the engine in a deliberately broken one to prove the oracle notices.
        var device = wrapDevice is null ? opened : wrapDevice(opened);
        try
        {
            run = await WorkloadRunner.RunAsync(device, workload, log, time, config, toleratesErrors);
        }
        finally
        {
            // Closing flushes; those calls come after the final tick and are outside every crash state.
            try
            {
                await device.DisposeAsync();
            }
            catch (IOException) when (toleratesErrors)
            {
                // After a failed fdatasync the close cannot flush either.
            }
        }
        result.FailedRequests = run.Ops.Count(o => o.Failed);
        if (backgroundErrors.Count > 0 && !toleratesErrors) result.Problems.Add($"background flush failed: {backgroundErrors[0].Message}");
        result.MissedBackgroundFlushes = run.MissedBackgroundFlushes;
        if (run.MissedBackgroundFlushes > 0) result.Problems.Add($"{run.MissedBackgroundFlushes} max-dirty-age flushes did not happen in time");

        var events = log.Events.Where(e => e.IssueTick <= run.FinalTick).ToList();
        result.HostWrites = events.Count(e => e.Kind == HostFileEventKind.Write);
        result.HostBarriers = events.Count(e => e.IsBarrier);
        result.HostFiles = events.Select(e => e.FileId).Distinct().Count();
        var oracle = new DurabilityOracle(run, workload.DeviceSize, format.InitialOpId);
        var builder = new CrashImageBuilder(log.Files);
        var random = new Random(seed);
        var stateFolder = Path.Combine(caseFolder, "state");
        var imageFileId = log.Files.Single(f => f.Path == Path.GetFullPath(imagePath)).Id;
        var content = new byte[workload.DeviceSize];
        // Many crash states are byte-identical (same files); their metadata check and device content are reused.
        var seen = new Dictionary<UInt128, (ConsistencyReport Report, SectorValue[]? Sectors)>();

        foreach (var tick in CrashStateGenerator.ChooseCrashTicks(events, run.FinalTick, budget, random))
        {
            var point = CrashStateGenerator.At(events, tick, budget, random);
            result.CrashPoints++;
            var baseContents = builder.BuildBase(point);
            foreach (var state in point.States)
            {
                result.StatesChecked++;
                var (paths, hash) = builder.Write(point, state, baseContents, stateFolder);
                var where = $"[{config.Name} {workload.Name} crash at tick {tick}, {state.Description}]";
                if (!seen.TryGetValue(hash, out var known))
                {
                    // An image with a pending journal is refused by qemu-img until nbdqcow replays it (as opening does).
                    var replayProblem = format.PrepareForCheck(paths[imageFileId]);
                    var report = replayProblem is null ? format.CheckConsistency(paths[imageFileId], workload.DeviceSize) : new ConsistencyReport(replayProblem);
                    var sectors = report.Corruption is null && await ReadDeviceAsync(paths[imageFileId], workload.DeviceSize, content, result, where, format.EncryptionKey)
                        ? DurabilityOracle.Decode(content)
                        : null;
                    seen[hash] = known = (report, sectors);
                }
                else
                {
                    result.DuplicateStates++;
                }
                result.LeakedClusters += known.Report.LeakedClusters;
                if (known.Report.LeakedClusters > 0) result.StatesWithLeaks++;
                if (known.Report.Corruption is not null)
                {
                    result.Corruptions++;
                    if (result.Problems.Count < 6) result.Problems.Add($"{where} corrupt: {known.Report.Corruption}");
                    continue;
                }
                if (known.Sectors is null)
                {
                    result.Corruptions++;
                    continue;
                }
                var verdict = oracle.Check(tick, known.Sectors);
                result.UnflushedAtRisk += verdict.UnflushedAtRisk;
                result.UnflushedLost += verdict.UnflushedLost;
                if (verdict.HasViolation)
                {
                    result.Violations++;
                    if (result.Problems.Count < 6) result.Problems.Add($"{where} {string.Join("; ", verdict.Problems)}");
                }
            }
        }
        try { Directory.Delete(caseFolder, recursive: true); } catch (IOException) { }
        result.Elapsed = stopwatch.Elapsed;
        return result;
    }

    /// <summary>Opens the crashed image with our engine and reads all of it; false (and a problem noted) when it cannot.</summary>
    private static async Task<bool> ReadDeviceAsync(string imagePath, long size, byte[] content, CrashCaseResult result, string where, byte[]? encryptionKey)
    {
        try
        {
            await using var image = ImageOpener.Open(imagePath, new ImageOpenOptions { CacheMode = CacheMode.Writeback, MaxDirtyAge = null, EncryptionKey = encryptionKey });
            if (image.Size != size) throw new InvalidDataException($"opened with size {image.Size}, expected {size}");
            const int chunk = 1 << 20;
            for (long offset = 0; offset < size; offset += chunk)
                await image.ReadAsync(offset, content.AsMemory((int)offset, (int)Math.Min(chunk, size - offset)));
            return true;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or ArgumentException)
        {
            if (result.Problems.Count < 6) result.Problems.Add($"{where} cannot open/read: {e.Message}");
            return false;
        }
    }
}
