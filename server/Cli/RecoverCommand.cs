using System.CommandLine;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Recover;
using Spectre.Console;

namespace NbdQcow.Server.Cli;

/// <summary>
/// `nbdqcow recover IMAGE --output FILE [--format qcow2|raw] [--force] [--snapshot NAME] [--fill-from-snapshots]
/// [--keep-backing] [--json] [--quiet] [-U]`. Never writes IMAGE. Exit codes as <see cref="RecoveryExitCode"/>.
/// </summary>
internal static class RecoverCommand
{
    private const string Explanation = """
        Reads IMAGE read-only and writes everything that can be found of the guest disk to a new image FILE:
          1. the active L1/L2 tables, every entry checked (reserved bits, alignment, inside the file, not on metadata);
          2. a scan of the whole file for clusters no table references: orphan L2 tables (qemu writes a new L2 table
             before the L1 entry, so after a lost L1 update table and data are intact), stale refcount blocks and
             table copies, and orphan data;
          3. an orphan L2 table is placed only when its L1 slot is known without guessing: a journal/history or an
             old L1 copy names it, a snapshot maps the same clusters at the same positions of one slot, or it is the
             only empty slot it fits in; a freed (stale) table loses to a live one by refcount and COPIED flags.
             Otherwise it goes, with its data and orphan data, to FILE.lost/ (clusters.raw + index.json with host
             offsets, kinds and candidate guest offsets);
          4. a host cluster two guest offsets claim is placed at neither (unless refcount and COPIED flag decide)
             and saved to FILE.lost/ with both candidates; compressed streams no table maps are searched for inside
             host clusters shared with live ones, decoded and saved.
        Refcounts are evidence only when the read-only check finds them consistent. The backing file is not
        followed unless --keep-backing. IMAGE is locked as a reader (-U: even while a writer has it), FILE as a writer.
        A garbage cluster_bits is probed from the shapes of L2 tables in the file (or given with --cluster-size);
        lost table offsets can be given with --l1-offset/--refcount-offset. Other header damage (magic, version,
        ...) stops with the field named.
        A report goes to stdout (--json for one JSON object); progress to stderr when it is a terminal (not with --quiet).
        Exit codes: 0 nothing damaged, all mapped data recovered; 1 damage found and recovered completely (every
        guest cluster back in place); 2 bad usage, unreadable or locked input (nothing written); 3 recovered with
        losses (guest data only in FILE.lost/ or unreadable; the output holds all that could be placed).
        """;

    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "The damaged qcow2 image (opened read-only, never written)." };
        var output = new Option<string>("--output") { HelpName = "FILE", Description = "The recovered image to write (must not exist unless --force).", Required = true };
        var format = new Option<string>("--format") { Description = "Output format: qcow2 (default; clean for qemu-img check) or raw.", DefaultValueFactory = _ => "qcow2" };
        format.AcceptOnlyFromAmong("qcow2", "raw");
        var force = new Option<bool>("--force") { Description = "Replace an existing output file and its FILE.lost folder." };
        var snapshot = new Option<string?>("--snapshot") { Description = "Recover this internal snapshot's view (name or id) instead of the active one; orphan tables then all go to lost+found." };
        var fill = new Option<bool>("--fill-from-snapshots")
        {
            Description = "For L1 slots the recovered view has no L2 table for, take the newest snapshot's table. The data is as old as that snapshot (mixing it with newer data can confuse a file system); entries inside an intact L2 table are never filled.",
        };
        var keepBacking = new Option<bool>("--keep-backing") { Description = "qcow2 output: refer to IMAGE's backing file, so unmapped clusters read from it as before." };
        var json = new Option<bool>("--json") { Description = "Print the report as one JSON object." };
        var ignoreJournal = new Option<bool>("--ignore-journal")
        {
            Description = "Do not read IMAGE.journal and its history files (by default, when present, committed table images not yet " +
                "in place are laid over the image and older ones serve as evidence for placing orphan L2 tables).",
        };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress display (it appears on stderr only when stderr is a terminal)." };
        var forceShare = new Option<bool>("--force-share", "-U")
        {
            Description = "Read IMAGE even while a writer has it locked (as qemu-img -U); the result may be a moment's state of a changing image.",
        };
        var clusterSize = new Option<string?>("--cluster-size")
        {
            Description = "Cluster size to use instead of the header's (512 to 2M, e.g. 64k). Without it a garbage cluster_bits is probed " +
                "from the shapes of L2 tables in the file.",
        };
        var keyFile = new Option<string?>("--key-file")
        {
            HelpName = "FILE",
            Description = "Secret of a LUKS-encrypted image (the whole file, as qemu's secret,file=; else NBDQCOW_KEY): its data is decrypted and the recovered image is written unencrypted.",
        };
        var l1Offset = new Option<string?>("--l1-offset") { Description = "Active L1 table offset to use instead of the header's (bytes, 0x... for hex)." };
        var refcountOffset = new Option<string?>("--refcount-offset") { Description = "Refcount table offset to use instead of the header's (bytes, 0x... for hex)." };
        var command = new Command("recover", "Recover the data of a damaged qcow2 image into a new image, with a report of what was found, placed and not placed.\n" + Explanation)
        {
            image, output, format, force, snapshot, fill, keepBacking, json, ignoreJournal, quiet, forceShare, clusterSize, l1Offset, refcountOffset, keyFile,
        };
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            string path = parseResult.GetValue(image)!;
            int? size;
            long? l1, refcounts;
            try
            {
                size = parseResult.GetValue(clusterSize) is { } text ? ParseClusterSize(text) : null;
                l1 = ParseOffset(parseResult.GetValue(l1Offset), "--l1-offset", size);
                refcounts = ParseOffset(parseResult.GetValue(refcountOffset), "--refcount-offset", size);
            }
            catch (FormatException e)
            {
                Console.Error.WriteLine($"nbdqcow recover: {e.Message}");
                return RecoveryExitCode.Unusable;
            }
            byte[]? secret;
            try
            {
                secret = EncryptionSecret.Read(parseResult.GetValue(keyFile));
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"nbdqcow recover: {e.Message}");
                return RecoveryExitCode.Unusable;
            }
            var options = new RecoveryOptions
            {
                ClusterSize = size,
                L1Offset = l1,
                RefcountOffset = refcounts,
                OutputPath = parseResult.GetValue(output)!,
                Format = parseResult.GetValue(format) == "raw" ? RecoveryOutputFormat.Raw : RecoveryOutputFormat.Qcow2,
                Force = parseResult.GetValue(force),
                Snapshot = parseResult.GetValue(snapshot),
                FillFromSnapshots = parseResult.GetValue(fill),
                KeepBacking = parseResult.GetValue(keepBacking),
                History = !parseResult.GetValue(ignoreJournal) && Qcow2JournalRecoverySource.For(path) is { } journal ? [journal] : [],
                Locking = parseResult.GetValue(forceShare) ? ImageLocking.ForceShare : ImageLocking.On,
                EncryptionKey = secret,
            };
            try
            {
                var report = Console.IsErrorRedirected || parseResult.GetValue(quiet)
                    ? await Qcow2Recovery.RunAsync(path, options)
                    : await RunWithProgressAsync(path, options);
                Console.Out.Write(parseResult.GetValue(json) ? RecoveryReportFormatter.ToJson(report) : RecoveryReportFormatter.ToText(report));
                return report.ExitCode;
            }
            catch (RecoveryInputException e)
            {
                Console.Error.WriteLine($"nbdqcow recover: {e.Message}");
                return RecoveryExitCode.Unusable;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"nbdqcow recover: {path}: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    private static int ParseClusterSize(string text)
    {
        long value;
        try
        {
            value = NbdQcow.Image.Qcow2.Qcow2Creator.ParseSize(text);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            throw new FormatException($"--cluster-size {text}: {e.Message}");
        }
        if (value is < 512 or > 2 << 20 || (value & (value - 1)) != 0)
            throw new FormatException($"--cluster-size {text}: must be a power of two from 512 to 2M");
        return (int)value;
    }

    private static long? ParseOffset(string? text, string option, int? clusterSize)
    {
        if (text is null) return null;
        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        if (!long.TryParse(hex ? text[2..] : text, hex ? System.Globalization.NumberStyles.HexNumber : System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out long value) || value <= 0)
            throw new FormatException($"{option} {text}: not a positive byte offset");
        if ((value & 511) != 0 || (clusterSize is { } c && value % c != 0))
            throw new FormatException($"{option} {text}: tables are cluster aligned");
        return value;
    }

    private static async Task<RecoveryReport> RunWithProgressAsync(string path, RecoveryOptions options)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        RecoveryReport? report = null;
        await console.Progress().AutoClear(true).StartAsync(async context =>
        {
            var bar = new ProgressBar(context);
            report = await Qcow2Recovery.RunAsync(path, options with { Progress = bar });
        });
        return report!;
    }

    /// <summary>Shows each phase as its own task; Spectre's tasks are safe to update from the recovery's thread.</summary>
    private sealed class ProgressBar(ProgressContext context) : IProgress<RecoveryProgress>
    {
        private readonly Dictionary<string, ProgressTask> _tasks = new();

        public void Report(RecoveryProgress value)
        {
            lock (_tasks)
            {
                if (!_tasks.TryGetValue(value.Phase, out var task))
                    _tasks[value.Phase] = task = context.AddTask(value.Phase, maxValue: Math.Max(1, value.Total));
                task.MaxValue = Math.Max(1, value.Total);
                task.Value = value.Done;
            }
        }
    }
}
