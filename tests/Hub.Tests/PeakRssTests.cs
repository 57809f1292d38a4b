using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Hub.Cli.Commands;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>Tests that reset or read this process's resident-set peak run alone (other tests allocate meanwhile).</summary>
[CollectionDefinition(nameof(ResidentSetCollection), DisableParallelization = true)]
public sealed class ResidentSetCollection;

/// <summary>
/// <c>hub bench</c>'s memory figure: the /proc/self/status parser, the Linux high-water-mark reset that keeps an export
/// out of the load + prefill + decode peak, and the bench output with and without an export.
/// </summary>
[Collection(nameof(ResidentSetCollection))]
public unsafe class PeakRssTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-peak-rss");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private const string Status = "Name:\tdotnet\nVmPeak:\t 3412345 kB\nVmHWM:\t  320660 kB\nVmRSS:\t   13560 kB\nVmHWMx:\t 1 kB\nThreads:\t12\nVmSwap:\t0 MB\n";

    [Fact]
    public void Status_parser_reads_kB_fields_as_bytes_by_exact_name()
    {
        Assert.Equal(320660L * 1024, PeakRss.ParseStatusBytes(Status, "VmHWM"));
        Assert.Equal(13560L * 1024, PeakRss.ParseStatusBytes(Status, "VmRSS"));
        Assert.Equal(3412345L * 1024, PeakRss.ParseStatusBytes(Status, "VmPeak"));
        Assert.Equal(1024L, PeakRss.ParseStatusBytes("VmHWMx:\t 1 kB\nVmHWM:\t 1 kB", "VmHWM")); // a longer name is another field
    }

    [Fact]
    public void Status_parser_returns_null_for_missing_unitless_or_malformed_fields()
    {
        Assert.Null(PeakRss.ParseStatusBytes(Status, "VmData"));
        Assert.Null(PeakRss.ParseStatusBytes(Status, "Threads")); // no unit: not a memory counter
        Assert.Null(PeakRss.ParseStatusBytes(Status, "VmSwap")); // not kB
        Assert.Null(PeakRss.ParseStatusBytes("VmHWM:\t -5 kB", "VmHWM"));
        Assert.Null(PeakRss.ParseStatusBytes("VmHWM:\t 99999999999999999999 kB", "VmHWM"));
        Assert.Null(PeakRss.ParseStatusBytes("", "VmHWM"));
    }

    [Fact]
    public void Composition_parser_needs_anon_file_and_shmem()
    {
        const string full = "VmRSS:\t 100 kB\nRssAnon:\t 60 kB\nRssFile:\t 36 kB\nRssShmem:\t 4 kB\n";
        Assert.Equal(new RssComposition(60 * 1024, 36 * 1024, 4 * 1024), PeakRss.ParseComposition(full));
        Assert.Null(PeakRss.ParseComposition("RssAnon:\t 60 kB\nRssFile:\t 36 kB\n"));
        Assert.Null(PeakRss.ParseComposition(Status));
    }

    private const string Smaps = """
        7f0000000000-7f0000400000 r--s 00000000 fd:01 1234                       /m/ir/model.ir.bin
        Size:               4096 kB
        Rss:                4000 kB
        FilePmdMapped:      2048 kB
        VmFlags: rd sh mr mw me ms hg
        7f0000400000-7f0000600000 r--s 00000000 fd:01 1235                       /m/ir/model_cache/x4-ab.bin
        Rss:                2048 kB
        FilePmdMapped:      2048 kB
        7f0000600000-7f0000800000 r--s 00000000 fd:01 1236                       /m/ir/model.ir.bin.old
        Rss:                 100 kB
        FilePmdMapped:         0 kB
        7f0000800000-7f0000a00000 rw-p 00000000 00:00 0
        Rss:                 512 kB
        AnonHugePages:         0 kB
        7f0000a00000-7f0000c00000 r--s 00000000 fd:01 1237                       /m/with space/w.gguf
        Rss:                  12 kB
        7f0000c00000-7f0000e00000 r--s 00000000 fd:01 1238                       /m/old/w.gguf (deleted)
        Rss:                  12 kB
        FilePmdMapped:         0 kB
        """;

    [Fact]
    public void Smaps_parser_sums_the_mappings_of_a_file_or_of_the_files_under_a_folder()
    {
        Assert.Equal(new MappedPages(4000 * 1024, 2048 * 1024), PeakRss.ParseMappedPages(Smaps, "/m/ir/model.ir.bin"));
        Assert.Equal(new MappedPages(6148 * 1024, 4096 * 1024), PeakRss.ParseMappedPages(Smaps, "/m/ir/"));
        Assert.Equal(new MappedPages(2048 * 1024, 2048 * 1024), PeakRss.ParseMappedPages(Smaps, "/m/ir/model_cache"));
        Assert.Equal(new MappedPages(12 * 1024, 0), PeakRss.ParseMappedPages(Smaps, "/m/with space/w.gguf"));
        Assert.Equal(new MappedPages(0, 0), PeakRss.ParseMappedPages(Smaps, "/m/i"));   // a prefix of a name is not a folder
        Assert.Equal(new MappedPages(4012 * 1024, 2048 * 1024), PeakRss.ParseMappedPages(Smaps, "/m/ir/model.ir.bin", "/m/with space"));
        Assert.Equal(new MappedPages(0, 0), PeakRss.ParseMappedPages(Smaps));
        Assert.Equal(new MappedPages(12 * 1024, 0), PeakRss.ParseMappedPages(Smaps, "/m/old/w.gguf"));   // replaced since mapped
        Assert.Equal(0, new MappedPages(0, 0).HugeFraction);
        Assert.Equal(0.5, new MappedPages(4, 2).HugeFraction);
    }

    [SkippableFact]
    public void The_live_smaps_shows_a_mapped_file_as_resident()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "/proc/self/smaps is Linux only");
        var path = Path.Combine(_tmp, "mapped.bin");
        File.WriteAllBytes(path, new byte[3 << 20]);
        using var f = new MappedFile(path);
        long sum = 0;
        for (long i = 0; i < f.Length; i += 4096) sum += f.Pointer[i];
        var pages = PeakRss.MappedPagesOf(path);
        Assert.NotNull(pages);
        Assert.Equal(3L << 20, pages.ResidentBytes);
        Assert.InRange(pages.HugeBytes, 0, pages.ResidentBytes);
        Assert.Equal(0, sum);
    }

    [SkippableFact]
    public void A_phase_attributes_touched_native_memory_to_its_anonymous_growth()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "RssAnon/RssFile are Linux counters");
        const long size = 48L << 20;
        var phase = RssPhase.Begin();
        Assert.NotNull(phase.BaselineComposition);
        var p = (byte*)NativeMemory.Alloc((nuint)size);
        try
        {
            for (long i = 0; i < size; i += 4096) p[i] = 1;
            var engine = new JsonObject();
            phase.AddGrowthByKind(engine, PeakRss.Composition());
            Assert.InRange((double)engine["rss_growth_anon_mib"]!, 40.0, 400.0);
            Assert.True((double)engine["rss_growth_file_mib"]! < 40.0, engine.ToJsonString());
        }
        finally { NativeMemory.Free(p); }
    }

    [SkippableFact]
    public void Reset_drops_the_peak_of_a_freed_allocation_and_a_phase_sees_only_its_own_growth()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the high-water mark can be reset on Linux only");
        const long big = 256L << 20, small = 64L << 20;
        Touch(big);
        long peakWithBig = PeakRss.PeakBytes();
        Assert.True(peakWithBig >= big, $"peak {peakWithBig} after touching {big} bytes");

        var phase = RssPhase.Begin();
        Assert.True(phase.Isolated, "/proc/self/clear_refs did not take the reset");
        long peakAfterReset = phase.PeakBytes();
        Assert.True(peakAfterReset < peakWithBig - big / 2, $"peak {peakAfterReset} after the reset, {peakWithBig} before it: the freed {big} bytes still count");

        Touch(small);
        long growth = phase.GrowthBytes();
        Assert.True(growth >= small - (4L << 20), $"phase growth {growth} after touching {small} bytes");
        Assert.True(growth < big, $"phase growth {growth} includes the allocation made before the phase");
    }

    [Fact]
    public void Without_a_reset_a_phase_reports_no_growth_and_says_its_peak_is_the_process_lifetime()
    {
        var phase = RssPhase.Begin();
        if (phase.Isolated) Assert.Contains("this phase only", phase.Scope);
        else
        {
            Assert.Equal(0, phase.GrowthBytes());
            Assert.Contains("process lifetime", phase.Scope);
        }
    }

    [SkippableFact]
    public void Bench_prints_export_seconds_only_when_it_exported_and_what_its_peak_covers()
    {
        var src = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var env = new Dictionary<string, string> { ["HUB_CACHE"] = _tmp, ["HF_HUB_OFFLINE"] = "1" };
        string[] args = ["bench", src, "--prompt-tokens", "4", "--new-tokens", "4", "--rounds", "1", "--json"];
        var first = HubCli.Run(env, args);
        Assert.True(first.ExitCode == 0, first.Stderr);
        var a = JsonNode.Parse(first.Stdout)!;
        Assert.True((double)a["export_seconds"]! > 0);
        Assert.True((double)a["peak_rss_mib"]! > 0);
        Assert.StartsWith("load + prefill + decode", (string)a["peak_rss_scope"]!);
        if (OperatingSystem.IsLinux()) Assert.Contains("VmHWM reset", (string)a["peak_rss_scope"]!);

        var second = HubCli.Run(env, args);
        Assert.True(second.ExitCode == 0, second.Stderr);
        var b = JsonNode.Parse(second.Stdout)!;
        Assert.Null(b["export_seconds"]); // the cached export was reused
        Assert.True((double)b["load_seconds"]! > 0);
        // Read passes between the rounds are reported beside the best-of-5 probe; their 256 MiB buffer is resident
        // through the rounds but is not the model's memory (a 1 MB model's run peaks far below it).
        Assert.True((double)b["read_bandwidth_between_rounds_gb_s"]! > 0);
        Assert.True((double)b["decode_bandwidth_fraction_between_rounds"]! > 0);
        if (OperatingSystem.IsLinux()) Assert.True((double)b["peak_rss_mib"]! < 256, $"peak {b["peak_rss_mib"]} MiB counts the probe buffer");
    }

    private static void Touch(long bytes)
    {
        var p = (byte*)NativeMemory.Alloc((nuint)bytes);
        try { for (long i = 0; i < bytes; i += 4096) p[i] = 1; }
        finally { NativeMemory.Free(p); }
    }
}
